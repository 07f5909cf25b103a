package namespace_test

import (
	"context"
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/namespace"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/testinfra"
)

func TestSealingOnlyMovesForwardAndKeepsEveryBoundary(t *testing.T) {
	ctx := context.Background()
	rdb, err := redisconn.New(redisconn.Config{Addrs: []string{testinfra.Redis(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	keys, err := keyspace.New(testinfra.Namespace(t, "cp"), 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := namespace.LoadSealedCutpoints(ctx, rdb, keys); err != nil || ok {
		t.Fatalf("fresh namespace: sealed %v, %v", ok, err)
	}
	cp := scoring.Cutpoints{Version: "rfm-b", Recency: [4]float64{1, 2, 3, 4}, Frequency: [4]float64{1, 1, 2, 3}, Monetary: [4]float64{10, 20, 30, 40}}
	for _, step := range []struct {
		s    namespace.SealedCutpoints
		want bool
	}{
		{namespace.SealedCutpoints{Boundary: 7, Date: "a"}, true},
		{namespace.SealedCutpoints{Boundary: 14, Date: "b", Population: 150, Derived: true, Cutpoints: &cp}, true},
		{namespace.SealedCutpoints{Boundary: 14, Date: "b again"}, false},
		{namespace.SealedCutpoints{Boundary: 7, Date: "a again"}, false},
	} {
		done, err := namespace.SealCutpoints(ctx, rdb, keys, step.s)
		if err != nil || done != step.want {
			t.Fatalf("sealing %+v: %v, %v; want %v", step.s, done, err, step.want)
		}
	}
	got, ok, err := namespace.LoadSealedCutpoints(ctx, rdb, keys)
	if err != nil || !ok || got.Boundary != 14 || got.Cutpoints == nil || *got.Cutpoints != cp {
		t.Fatalf("sealed: %+v %v %v", got, ok, err)
	}
	history, err := namespace.CutpointHistory(ctx, rdb, keys)
	if err != nil || len(history) != 2 || history[0].Date != "a" || history[1].Date != "b" {
		t.Fatalf("history: %+v %v", history, err)
	}
	p, err := namespace.PolicyUnder(scoring.DefaultPolicy(), got, ok)
	if err != nil || p.Cutpoints != cp || p.Sealed == nil || *p.Sealed != 14 {
		t.Fatalf("policy under the sealed cut points: %+v %v", p, err)
	}
	bad := cp
	bad.Recency = [4]float64{4, 3, 2, 1}
	if _, err := namespace.SealCutpoints(ctx, rdb, keys, namespace.SealedCutpoints{Boundary: 21, Cutpoints: &bad}); err == nil {
		t.Fatal("sealed decreasing cut points")
	}
}
