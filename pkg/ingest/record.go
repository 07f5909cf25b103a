package ingest

import (
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// NewRecord is message i of batch b decoded as in, for a stage that decodes records itself
// (Handler does it for the services): rejecting the record rejects message i of b.
func NewRecord(b *stream.Batch, i int, in event.Input) Record {
	return Record{Message: b.Messages[i], Event: in, batch: b, index: i}
}
