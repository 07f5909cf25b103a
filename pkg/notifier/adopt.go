package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/state"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

// GroupAdmin reads and places consumer group offsets (stream.Admin).
type GroupAdmin interface {
	GroupOffsets(ctx context.Context, group, topic string) (stream.Offsets, error)
	CommitGroupOffsets(ctx context.Context, group, topic string, offsets stream.Offsets) error
}

// Adoption records the one-time move of the notifier's state from a namespace to the
// deployment (stored as JSON under AdoptedKey).
type Adoption struct {
	From string    `json:"from_namespace"`
	At   time.Time `json:"at"`
	Keys int       `json:"keys_moved"`
	// Kept lists keys that could not move because the deployment already had them.
	Kept []string `json:"kept,omitempty"`
	// Offsets lists the topics whose committed offsets the deployment's group took over.
	Offsets []string `json:"offsets,omitempty"`
}

// AdoptedKey is the deployment's record that its notifier state lives at deployment level.
func AdoptedKey(d keyspace.Deployment) string { return d.Global("notifier:adopted") }

func adoptingKey(d keyspace.Deployment) string { return d.Global("notifier:adopting") }

// adoptLock bounds how long one notifier may hold the adoption; others wait for it.
const adoptLock = 2 * time.Minute

// Adopt moves the notifier state that earlier versions kept per namespace (arbitration
// state, trigger ids, decision history, delivery queues under "loy:<ns>:notify*", and the
// consumer group "loyalty-<ns>-notifier") to the deployment, once. ks is the namespace the
// notifier ran on before (the active one); topics are the physical derived topics its group
// reads, and group the deployment's group (GroupID) — empty skips the offsets (an explicitly
// configured group is the operator's). Keys move with RENAMENX, which keeps them in their
// slot (the hash tag does not change); a key the deployment already holds is left where it
// is and listed. Several notifiers starting together take a lock, and the others wait for the
// record. A deployment that never ran an earlier version adopts nothing and records that.
//
// Run the upgrade with the previous notifier stopped: a notifier of an earlier version still
// running would keep writing the namespace's keys and committing the namespace's group.
func Adopt(ctx context.Context, rdb redis.UniversalClient, admin GroupAdmin, ks keyspace.Keyspace, d keyspace.Deployment,
	group string, topics []string, log *zap.Logger) (Adoption, error) {
	deadline := time.Now().Add(adoptLock + 30*time.Second)
	for {
		raw, err := rdb.Get(ctx, AdoptedKey(d)).Bytes()
		if err == nil {
			var a Adoption
			if err := json.Unmarshal(raw, &a); err != nil {
				return Adoption{}, fmt.Errorf("reading %s: %w", AdoptedKey(d), err)
			}
			return a, nil
		}
		if !errors.Is(err, redis.Nil) {
			return Adoption{}, fmt.Errorf("reading %s: %w", AdoptedKey(d), err)
		}
		ok, err := rdb.SetNX(ctx, adoptingKey(d), ks.Namespace(), adoptLock).Result()
		if err != nil {
			return Adoption{}, fmt.Errorf("locking the notifier state adoption: %w", err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return Adoption{}, fmt.Errorf("another notifier holds %s and has not finished adopting the notifier state", adoptingKey(d))
		}
		select {
		case <-ctx.Done():
			return Adoption{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	defer rdb.Del(context.WithoutCancel(ctx), adoptingKey(d))

	a := Adoption{From: ks.Namespace(), At: time.Now().UTC()}
	oldPrefix, newPrefix := ks.Prefix(), d.Global("")
	err := state.ForEachMaster(ctx, rdb, func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, oldPrefix+"notify*", 1000).Iterator()
		var found []string
		for iter.Next(ctx) {
			found = append(found, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return fmt.Errorf("scanning %snotify*: %w", oldPrefix, err)
		}
		for _, key := range found {
			kind, _, _ := strings.Cut(strings.TrimPrefix(key, oldPrefix), ":")
			if !isNotifierKind(kind) {
				continue
			}
			moved, err := c.RenameNX(ctx, key, newPrefix+strings.TrimPrefix(key, oldPrefix)).Result()
			if err != nil {
				return fmt.Errorf("moving %s: %w", key, err)
			}
			if moved {
				a.Keys++
			} else {
				a.Kept = append(a.Kept, key)
			}
		}
		return nil
	})
	if err != nil {
		return a, err
	}
	if group != "" {
		old := "loyalty-" + ks.Namespace() + "-" + Service
		for _, topic := range topics {
			if took, err := adoptOffsets(ctx, admin, old, group, topic); err != nil {
				return a, err
			} else if took {
				a.Offsets = append(a.Offsets, topic)
			}
		}
	}
	raw, err := json.Marshal(a)
	if err != nil {
		return a, fmt.Errorf("encoding the adoption record: %w", err)
	}
	if err := rdb.Set(ctx, AdoptedKey(d), raw, 0).Err(); err != nil {
		return a, fmt.Errorf("recording the adoption: %w", err)
	}
	if a.Keys > 0 || len(a.Offsets) > 0 || len(a.Kept) > 0 {
		log.Info("moved the notifier state from the namespace to the deployment", zap.String("namespace", a.From),
			zap.Int("keys", a.Keys), zap.Strings("kept", a.Kept), zap.Strings("offsets_of", a.Offsets))
	}
	return a, nil
}

// adoptOffsets gives group the committed offsets of old on topic, unless group has its own.
func adoptOffsets(ctx context.Context, admin GroupAdmin, old, group, topic string) (bool, error) {
	mine, err := admin.GroupOffsets(ctx, group, topic)
	if err != nil || len(mine) > 0 {
		return false, err
	}
	theirs, err := admin.GroupOffsets(ctx, old, topic)
	if err != nil || len(theirs) == 0 {
		return false, err
	}
	if err := admin.CommitGroupOffsets(ctx, group, topic, theirs); err != nil {
		return false, fmt.Errorf("placing group %s where %s stopped: %w", group, old, err)
	}
	return true, nil
}

func isNotifierKind(kind string) bool {
	return slices.Contains(customerKinds, kind) || slices.Contains(shardKinds, kind)
}
