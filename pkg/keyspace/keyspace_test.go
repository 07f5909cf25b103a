package keyspace_test

import (
	"strconv"
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
)

func TestACustomersKeysShareTheHashTagOfTheirShard(t *testing.T) {
	k, err := keyspace.New("live", 64)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"c-1", "17850", "weird{id}with}braces", ""} {
		shard := k.Shard(id)
		tag := keyspace.HashTag(k.Customer(id))
		if tag != keyspace.HashTag(k.Outbox(shard)) || tag != keyspace.HashTag(k.Deadlines(shard)) {
			t.Errorf("%q: customer tag %q, outbox %q, deadlines %q", id, tag, k.Outbox(shard), k.Deadlines(shard))
		}
	}
}

func TestNamespacesKeepKeysApart(t *testing.T) {
	a, _ := keyspace.New("live", 8)
	b, _ := keyspace.New("replay-1", 8)
	if a.Customer("c") == b.Customer("c") || a.Outbox(1) == b.Outbox(1) {
		t.Fatal("two namespaces share a key")
	}
}

func TestBadNamespacesAndShardCountsAreRejected(t *testing.T) {
	for _, ns := range []string{"", "has space", "a:b", "x{y}", "abcdefghijabcdefghijabcdefghij123"} {
		if _, err := keyspace.New(ns, 8); err == nil {
			t.Errorf("namespace %q accepted", ns)
		}
	}
	if _, err := keyspace.New("ok", 0); err == nil {
		t.Error("zero shards accepted")
	}
}

// The names below are stored data: changing one orphans what a running deployment holds.
func TestKeyNamesAreStable(t *testing.T) {
	k, _ := keyspace.New("live", 64)
	d, err := keyspace.NewDeployment("loyalty")
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		d.Active(): "loyd:loyalty:active", d.Namespaces(): "loyd:loyalty:namespaces", d.Erased(): "loyd:loyalty:erased",
		k.Policy(): "loy:live:policy", k.CutpointBoundaries(): "loy:live:cutpoint-boundaries", k.Watermarks(): "loy:live:watermarks",
		k.Replay(): "loy:live:replay", k.Lease("relay", 3): "loy:live:lease:relay:{s3}",
		k.ShardKey("notify-due", 5):       "loy:live:notify-due:{s5}",
		k.CustomerKey("notify", "c-1"):    "loy:live:notify:{s" + strconv.Itoa(k.Shard("c-1")) + "}:c-1",
		d.ShardKey("notify-due", 5):       "loyd:loyalty:notify-due:{s5}",
		d.CustomerKey("notify", 9, "c-1"): "loyd:loyalty:notify:{s9}:c-1",
		d.Global("notifier:adopted"):      "loyd:loyalty:notifier:adopted",
	} {
		if got != want {
			t.Errorf("key %q, want %q", got, want)
		}
	}
	if _, err := keyspace.NewDeployment("bad name"); err == nil {
		t.Error("bad deployment name accepted")
	}
}
