package stream_test

import (
	"context"
	"errors"
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

type memorySink struct{ got []stream.Rejection }

func (s *memorySink) DeadLetter(_ context.Context, r []stream.Rejection) error {
	s.got = append(s.got, r...)
	return nil
}

func batchOf(values ...string) *stream.Batch {
	msgs := make([]stream.Message, len(values))
	for i, v := range values {
		msgs[i] = stream.Message{Topic: "t", Offset: int64(i), Value: []byte(v)}
	}
	return stream.NewBatch(msgs)
}

func TestAPanickingRecordIsRejectedAndTheOthersAreProcessed(t *testing.T) {
	var processed []string
	h := stream.HandlerFunc(func(_ context.Context, b *stream.Batch) error {
		var done []string
		for i, m := range b.Messages {
			if b.Rejected(i) {
				continue
			}
			if string(m.Value) == "boom" {
				panic("bad record")
			}
			done = append(done, string(m.Value))
		}
		processed = append(processed, done...)
		return nil
	})
	sink := &memorySink{}
	err := stream.Chain(h, stream.DeadLetter(sink), stream.Recover()).HandleBatch(context.Background(), batchOf("a", "boom", "c"))
	if err != nil {
		t.Fatal(err)
	}
	if len(processed) != 2 || processed[0] != "a" || processed[1] != "c" {
		t.Fatalf("processed %v, want [a c]", processed)
	}
	if len(sink.got) != 1 || sink.got[0].Code != "handler_panic" || sink.got[0].Message.Offset != 1 {
		t.Fatalf("dead letters %+v, want the panicking record at offset 1", sink.got)
	}
}

func TestAFailingSinkFailsTheBatchSoItIsNotCommitted(t *testing.T) {
	h := stream.HandlerFunc(func(_ context.Context, b *stream.Batch) error {
		b.Reject(0, "invalid", errors.New("nope"))
		return nil
	})
	failing := sinkFunc(func(context.Context, []stream.Rejection) error { return errors.New("kafka down") })
	if err := stream.Chain(h, stream.DeadLetter(failing)).HandleBatch(context.Background(), batchOf("x")); err == nil {
		t.Fatal("want an error when the dead-letter write fails")
	}
}

func TestOversizeRecordsAreRejectedBeforeTheHandlerSeesThem(t *testing.T) {
	seen := 0
	h := stream.HandlerFunc(func(_ context.Context, b *stream.Batch) error {
		for i := range b.Messages {
			if !b.Rejected(i) {
				seen++
			}
		}
		return nil
	})
	sink := &memorySink{}
	if err := stream.Chain(h, stream.DeadLetter(sink), stream.Oversize(4)).HandleBatch(context.Background(), batchOf("ok", "too long")); err != nil {
		t.Fatal(err)
	}
	if seen != 1 || len(sink.got) != 1 || sink.got[0].Code != "oversize" {
		t.Fatalf("seen %d, dead letters %+v", seen, sink.got)
	}
}

type sinkFunc func(context.Context, []stream.Rejection) error

func (f sinkFunc) DeadLetter(ctx context.Context, r []stream.Rejection) error { return f(ctx, r) }
