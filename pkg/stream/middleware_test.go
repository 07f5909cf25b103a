package stream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

// A handler may reject records of one batch from several goroutines (the store computes two
// chunks at once): every rejection is kept, the first reason of each record wins, and the
// race detector sees no unguarded access.
func TestABatchTakesRejectionsFromSeveralGoroutines(t *testing.T) {
	msgs := make([]stream.Message, 200)
	for i := range msgs {
		msgs[i] = stream.Message{Topic: "t", Offset: int64(i)}
	}
	b := stream.NewBatch(msgs)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < len(msgs); i += 2 { // every record twice, by two goroutines
				b.Reject(i, fmt.Sprintf("g%d", g), errors.New("bad"))
				_ = b.Rejected(i)
			}
		}()
	}
	wg.Wait()
	rs := b.Rejections()
	if len(rs) != len(msgs) {
		t.Fatalf("%d rejections kept, want %d", len(rs), len(msgs))
	}
	for i, r := range rs {
		if r.Message.Offset != int64(i) || (r.Code != fmt.Sprintf("g%d", i%2) && r.Code != fmt.Sprintf("g%d", i%2+2)) {
			t.Fatalf("rejection %d: offset %d code %s", i, r.Message.Offset, r.Code)
		}
	}
}
