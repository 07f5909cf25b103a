package keyspace

import (
	"hash/crc32"
	"strconv"
	"testing"

	"pgregory.net/rapid"
)

// TestChecksumIEEEIsCRC32: the shard of a customer is crc32 (IEEE) of its id modulo the shard
// count. The checksum the keys use, written to avoid an allocation, must agree with hash/crc32
// on every string, or customers would move shards.
func TestChecksumIEEEIsCRC32(t *testing.T) {
	for _, s := range []string{"", "a", "17850", "c-000123", "weird{id}with}braces", "é\x00\xff"} {
		if got, want := checksumIEEE(s), crc32.ChecksumIEEE([]byte(s)); got != want {
			t.Errorf("checksumIEEE(%q) = %#x, crc32 %#x", s, got, want)
		}
	}
	rapid.Check(t, func(t *rapid.T) {
		s := rapid.String().Draw(t, "id")
		if got, want := checksumIEEE(s), crc32.ChecksumIEEE([]byte(s)); got != want {
			t.Fatalf("checksumIEEE(%q) = %#x, crc32 %#x", s, got, want)
		}
	})
}

// TestTagsAreTheShardsHashTags: the precomputed tags are "{s<shard>}" for every shard count a
// keyspace allows, and shards beyond them are still tagged the same way.
func TestTagsAreTheShardsHashTags(t *testing.T) {
	for shard := range maxShards + 2 {
		if got, want := tag(shard), "{s"+strconv.Itoa(shard)+"}"; got != want {
			t.Fatalf("tag(%d) = %q, want %q", shard, got, want)
		}
	}
	if got := (Keyspace{ns: "live", shards: 64}).Customer("17850"); got != "loy:live:c:{s"+strconv.Itoa(int(crc32.ChecksumIEEE([]byte("17850"))%64))+"}:17850" {
		t.Fatalf("customer key %q", got)
	}
}
