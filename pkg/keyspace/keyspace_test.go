package keyspace_test

import (
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
