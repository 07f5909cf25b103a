// Package state is the customer store in Redis. It reads a batch of customers' states, lets
// the caller's pure computation derive the new states, and writes them back with one Lua call
// per shard that, atomically per customer:
//
//   - checks the customer's version is still the one read (compare-and-set; the three consumer
//     services and the sweeper may update one customer at the same moment) and bumps it;
//   - replaces the state: one compact value (see value.go), or a hash for a tombstone;
//   - appends the derived events to the shard's outbox stream, which the relay publishes;
//   - sets or clears the customer's inactivity deadline in the shard's due-time sorted set;
//   - adjusts the shard's population histograms (for the RFM cut points) and its KPI
//     counters (package kpi).
//
// Customers whose version moved are re-read and recomputed. Which source offsets were
// applied is part of the state itself, so the same atomic write records them.
package state

import (
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/loyalty-scoring/loyalty/pkg/keyspace"
	"github.com/loyalty-scoring/loyalty/pkg/outbox"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
)

//go:embed apply.lua
var applyLua string

var (
	applySource = versionLua + applyLua
	applyScript = redisconn.NewScript("state-apply", applySource)
)

// versionField holds the per-customer version in the state hash.
const versionField = "_v"

// OutboxEntry is one derived event waiting to be published. A customer's events of one write
// go into one outbox entry, keyed by the customer (package outbox).
type OutboxEntry = outbox.Event

// MaxTransitions bounds a customer's transition list: the newest entries are kept.
const MaxTransitions = 20

// Update is the new state of one customer and what goes with it.
type Update struct {
	// Value is the complete new state, a compact binary encoding (scoring.State.AppendBinary),
	// stored as one string; the store adds the version. Nil with Fields nil means "unchanged,
	// write nothing".
	Value []byte
	// Fields, when Value is nil, is the complete new state as a hash: a quarantine tombstone,
	// or a caller's state of its own.
	Fields map[string]string
	Outbox []OutboxEntry
	// Deadline is the customer's next inactivity deadline; zero removes it.
	Deadline time.Time
	// Histogram holds increments to the shard's population histogram fields.
	Histogram map[string]int64
	// KPI holds increments to the shard's KPI counters (package kpi).
	KPI map[string]int64
	// Transitions are entries for the customer's transition list, oldest first; the list keeps
	// the newest MaxTransitions.
	Transitions []string
	// Quarantine, when set, says why the stored state cannot be used: instead of a write, the
	// customer is quarantined (see quarantine.go) and the rest of the batch goes on.
	Quarantine string
}

// ComputeFunc derives a customer's update from the state read from Redis (empty for a new
// customer). It may run more than once for the same customer when a concurrent writer won
// the race, so it must be a pure function of its inputs.
type ComputeFunc func(customerID string, current Current) (Update, error)

// Metrics are the store's Prometheus metrics.
type Metrics struct {
	conflicts prometheus.Counter
	writes    prometheus.Counter
	outbox    prometheus.Counter
	// quarantined counts customers quarantined for an unreadable state.
	quarantined prometheus.Counter
}

// NewMetrics creates and registers (when reg is not nil) the store metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{Name: "loyalty_store_conflicts_total",
			Help: "Customer writes rejected by the version check and retried."}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{Name: "loyalty_store_writes_total",
			Help: "Customer states written."}),
		outbox: prometheus.NewCounter(prometheus.CounterOpts{Name: "loyalty_derived_events_total",
			Help: "Derived events appended to the outbox."}),
	}
	if reg != nil {
		reg.MustRegister(m.conflicts, m.writes, m.outbox)
	}
	m.quarantined = newQuarantineCounter(reg)
	return m
}

// Store is the customer store of one namespace.
type Store struct {
	rdb     redis.UniversalClient
	keys    keyspace.Keyspace
	metrics *Metrics
	// MaxAttempts bounds compare-and-set retries of one customer within a call.
	MaxAttempts int
	// Chunk bounds the customers of one read, compute and write within Apply (0:
	// DefaultChunk). The time between a customer's read and its write is the window in which
	// another writer's write makes it conflict and computes it again; it grows with the
	// customers computed in between, while Redis's fixed cost per call is small beside a
	// hundred customers' writes.
	Chunk int
	// Concurrency is how many chunks of one Apply call are read, computed and written at once
	// (0 or 1: one after another). With two, a chunk is read and computed while Redis runs the
	// write of the one before, instead of each side waiting for the other: a batch of several
	// chunks takes less time for the same work. The compute function must then be safe for
	// concurrent calls for different customers.
	Concurrency int
	// SpanShards writes all the shards of a batch with one apply script call, their counter
	// increments summed into the first shard's, and reads every shard's counters atomically.
	// New sets it on a single server; a Redis Cluster needs a script's keys in one slot, so
	// there each shard is one call (and its increments stay in its own counters).
	SpanShards bool
	// folds counts the entries this store appended to each counter journal (journal.go).
	folds journalFolds
}

// ErrTooManyConflicts is returned when a customer kept changing under the store.
var ErrTooManyConflicts = errors.New("customer state kept changing concurrently")

// New returns a store and loads its script (so a broken server setup fails at start-up).
// metrics may be nil.
func New(ctx context.Context, rdb redis.UniversalClient, keys keyspace.Keyspace, metrics *Metrics) (*Store, error) {
	if err := redisconn.LoadAll(ctx, rdb, applyScript, quarantine, foldScript); err != nil {
		return nil, err
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	_, cluster := rdb.(*redis.ClusterClient)
	return &Store{rdb: rdb, keys: keys, metrics: metrics, MaxAttempts: 32, SpanShards: !cluster}, nil
}

// Keys returns the store's keyspace.
func (s *Store) Keys() keyspace.Keyspace { return s.keys }

// Result summarises one Apply call.
type Result struct {
	Written   int
	Conflicts int
	// Outbox is the number of outbox entries appended: one per written customer with derived
	// events.
	Outbox int
}

// Apply reads the customers, computes their updates and writes them atomically. Duplicated
// ids are processed once. It returns after every customer was written or the first error.
func (s *Store) Apply(ctx context.Context, customerIDs []string, compute ComputeFunc) (Result, error) {
	var res Result
	pending := dedupe(customerIDs)
	for attempt := 1; len(pending) > 0; attempt++ {
		if attempt > s.MaxAttempts {
			return res, fmt.Errorf("%w: %d customers after %d attempts", ErrTooManyConflicts, len(pending), s.MaxAttempts)
		}
		if attempt > 1 {
			// Jittered backoff, so writers racing for the same customers fall out of step.
			pause := time.Duration(rand.Int64N(int64(min(attempt*attempt, 50)) * int64(time.Millisecond)))
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(pause):
			}
		}
		retry, err := s.attemptChunks(ctx, pending, compute, &res)
		if err != nil {
			return res, err
		}
		pending = retry
	}
	return res, nil
}

// attemptChunks attempts the pending customers chunk by chunk, Concurrency chunks at once,
// adds what they did to res and returns the customers to try again, in chunk order. On an
// error it returns the first chunk's error once the chunks in flight have ended.
func (s *Store) attemptChunks(ctx context.Context, pending []string, compute ComputeFunc, res *Result) ([]string, error) {
	chunks := slices.Collect(slices.Chunk(pending, s.chunk()))
	if s.Concurrency <= 1 || len(chunks) == 1 {
		var retry []string
		for _, chunk := range chunks {
			left, err := s.attempt(ctx, chunk, compute, res)
			if err != nil {
				return nil, err
			}
			retry = append(retry, left...)
		}
		return retry, nil
	}
	type outcome struct {
		res  Result
		left []string
		err  error
	}
	outcomes := make([]outcome, len(chunks))
	slots := make(chan struct{}, s.Concurrency)
	var wg sync.WaitGroup
	var failed atomic.Bool
	for i, chunk := range chunks {
		slots <- struct{}{}
		if failed.Load() {
			<-slots
			break // the call fails: start no more chunks
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			o := &outcomes[i]
			if o.left, o.err = s.attempt(ctx, chunk, compute, &o.res); o.err != nil {
				failed.Store(true)
			}
		}()
	}
	wg.Wait()
	var retry []string
	var err error
	for _, o := range outcomes {
		res.Written, res.Conflicts, res.Outbox = res.Written+o.res.Written, res.Conflicts+o.res.Conflicts, res.Outbox+o.res.Outbox
		if err == nil {
			err = o.err
		}
		retry = append(retry, o.left...)
	}
	if err != nil {
		return nil, err
	}
	return retry, nil
}

// chunk is how many customers one read-compute-write of Apply takes (Store.Chunk).
func (s *Store) chunk() int {
	if s.Chunk > 0 {
		return s.Chunk
	}
	return DefaultChunk
}

// DefaultChunk is Store.Chunk's default (docs/design.md, "Conflicts").
const DefaultChunk = 128

// PipelinedConcurrency is the Concurrency of a replay's store: one chunk computed while
// another is written. A replay's merge is a single stream of batches on a machine it has to
// itself, and went 10–20% faster; the consumer services, three streams and a sweeper that
// keep the machine busy, gained nothing and conflicted more (docs/design.md, "Known limits").
const PipelinedConcurrency = 2

// ApplyOnce is Apply without the retries: it reads, computes and writes once, and returns the
// ids it left unwritten because another writer changed them in between (or a quarantine lost
// its race). It is for a writer whose work stays to be done, and is found again, without it:
// the sweeper, whose due customers stay due until written. Retrying at once would make a
// small call of its own for a few customers, which costs Redis about as much as a large one.
func (s *Store) ApplyOnce(ctx context.Context, customerIDs []string, compute ComputeFunc) (Result, []string, error) {
	var res Result
	var left []string
	for chunk := range slices.Chunk(dedupe(customerIDs), s.chunk()) {
		l, err := s.attempt(ctx, chunk, compute, &res)
		if err != nil {
			return res, left, err
		}
		left = append(left, l...)
	}
	return res, left, nil
}

// attempt reads the pending customers, computes and writes their updates with one write, adds
// what it did to res and returns the customers to try again.
func (s *Store) attempt(ctx context.Context, pending []string, compute ComputeFunc, res *Result) ([]string, error) {
	states, versions, err := s.read(ctx, pending)
	if err != nil {
		return nil, err
	}
	byShard := map[int][]prepared{}
	var retry []string
	for i, id := range pending {
		cur := states[i]
		u, err := compute(id, cur)
		if err != nil {
			return nil, fmt.Errorf("computing customer %s: %w", id, err)
		}
		version := strconv.FormatUint(versions[i], 10)
		if u.Quarantine != "" {
			if cur.Unreadable != "" {
				version = ""
			}
			done, err := s.quarantineCustomer(ctx, id, version, u.Quarantine)
			if err != nil {
				return nil, err
			}
			if !done {
				retry = append(retry, id)
			}
			continue
		}
		if u.Value == nil && u.Fields == nil {
			continue
		}
		shard := s.keys.Shard(id)
		byShard[shard] = append(byShard[shard], prepared{id: id, version: versions[i], update: u})
	}
	conflicted, written, outbox, err := s.write(ctx, byShard)
	if err != nil {
		return nil, err
	}
	res.Written += written
	res.Outbox += outbox
	res.Conflicts += len(conflicted)
	s.metrics.conflicts.Add(float64(len(conflicted)))
	s.metrics.writes.Add(float64(written))
	s.metrics.outbox.Add(float64(outbox))
	return append(conflicted, retry...), nil
}

type prepared struct {
	id      string
	version uint64
	update  Update
}

func dedupe(ids []string) []string {
	seen := make(map[string]struct{}, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, ok := seen[id]; !ok {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	return out
}

// read fetches the customers' stored values in one pipelined round trip (go-redis splits it
// by node on a cluster), and the hashes among them (a state in the former layout, a
// tombstone) in a second one.
func (s *Store) read(ctx context.Context, ids []string) ([]Current, []uint64, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.keys.Customer(id)
	}
	return s.readKeys(ctx, keys)
}

// ReadKeys reads customers by their keys (keyspace.Keyspace.Customer), as Apply does, for
// tools that sample or scan a namespace.
func ReadKeys(ctx context.Context, rdb redis.UniversalClient, keys []string) ([]Current, error) {
	out, _, err := (&Store{rdb: rdb}).readKeys(ctx, keys)
	return out, err
}

// readKeys is read by the customers' keys.
func (s *Store) readKeys(ctx context.Context, ids []string) ([]Current, []uint64, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(ids))
	for i, key := range ids {
		cmds[i] = pipe.Get(ctx, key)
	}
	_, err := pipe.Exec(ctx)
	if err != nil && !errors.Is(err, redis.Nil) && !redis.HasErrorPrefix(err, "WRONGTYPE") {
		return nil, nil, fmt.Errorf("reading %d customer states: %w", len(ids), err)
	}
	out := make([]Current, len(ids))
	versions := make([]uint64, len(ids))
	var hashes []int
	for i, c := range cmds {
		switch cerr := c.Err(); {
		case cerr == nil:
			raw, _ := c.Bytes()
			v, payload, ok := decodeValue(raw)
			if !ok {
				// One customer never fails a batch: the computation quarantines it.
				out[i] = Current{Unreadable: "the stored string is not a compact state"}
				continue
			}
			out[i], versions[i] = Current{Value: payload}, v
		case errors.Is(cerr, redis.Nil):
		case redis.HasErrorPrefix(cerr, "WRONGTYPE"):
			hashes = append(hashes, i)
		default:
			return nil, nil, fmt.Errorf("reading %d customer states: %w", len(ids), cerr)
		}
	}
	if len(hashes) == 0 {
		return out, versions, nil
	}
	pipe = s.rdb.Pipeline()
	hcmds := make([]*redis.MapStringStringCmd, len(hashes))
	for j, i := range hashes {
		hcmds[j] = pipe.HGetAll(ctx, ids[i])
	}
	_, err = pipe.Exec(ctx)
	if err != nil && !redis.HasErrorPrefix(err, "WRONGTYPE") {
		return nil, nil, fmt.Errorf("reading %d customer hashes: %w", len(hashes), err)
	}
	for j, i := range hashes {
		switch cerr := hcmds[j].Err(); {
		case cerr == nil:
			out[i], versions[i] = currentOfHash(hcmds[j].Val())
		case redis.HasErrorPrefix(cerr, "WRONGTYPE"):
			out[i] = Current{Unreadable: "the stored value is neither a string nor a hash"}
		default:
			return nil, nil, fmt.Errorf("reading customer hashes: %w", cerr)
		}
	}
	return out, versions, nil
}

// Current returns one customer's stored value, or ErrNotFound.
func (s *Store) Current(ctx context.Context, customerID string) (Current, error) {
	states, _, err := s.read(ctx, []string{customerID})
	if err != nil {
		return Current{}, err
	}
	if states[0].Empty() {
		return Current{}, ErrNotFound
	}
	return states[0], nil
}

// Get returns one customer's state as text fields (Current.View), or ErrNotFound.
func (s *Store) Get(ctx context.Context, customerID string) (map[string]string, error) {
	cur, err := s.Current(ctx, customerID)
	if err != nil {
		return nil, err
	}
	return cur.View(), nil
}

// Deadline returns the customer's scheduled inactivity deadline, if any.
func (s *Store) Deadline(ctx context.Context, customerID string) (time.Time, bool, error) {
	ms, err := s.rdb.ZScore(ctx, s.keys.Deadlines(s.keys.Shard(customerID)), customerID).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("reading deadline: %w", err)
	}
	return time.UnixMilli(int64(ms)).UTC(), true, nil
}

// ErrNotFound is returned for a customer with no state.
var ErrNotFound = errors.New("customer not found")

// write runs the apply script, pipelined, and returns the ids whose version check failed:
// one call for every shard of the batch on a single server (SpanShards), one per shard on a
// Cluster. Redis spends most of a write on fixed costs per call and per counter field, which a
// call spanning the shards pays once: BenchmarkApply, batches of 250 customers over 64
// shards, measured 12.8 against 29.5 µs of Redis CPU per write (at 1,000 customers, about
// 15 µs either way).
func (s *Store) write(ctx context.Context, byShard map[int][]prepared) (conflicted []string, written, outbox int, err error) {
	if len(byShard) == 0 {
		return nil, 0, 0, nil
	}
	shards := make([]int, 0, len(byShard))
	for shard := range byShard {
		shards = append(shards, shard)
	}
	sort.Ints(shards)
	groups := [][]int{shards}
	if !s.SpanShards {
		groups = make([][]int, len(shards))
		for i, shard := range shards {
			groups[i] = []int{shard}
		}
	}
	run := func(useEval bool) ([]*redis.Cmd, error) {
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(groups))
		for i, group := range groups {
			keys, args := s.scriptArgs(group, byShard)
			if useEval {
				cmds[i] = pipe.Eval(ctx, applySource, keys, args...)
			} else {
				cmds[i] = pipe.EvalSha(ctx, applyScript.SHA(), keys, args...)
			}
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	cmds, err := run(false)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// The server lost its script cache (restart, failover): send the source this time;
		// EVAL caches it again for the next batch.
		cmds, err = run(true)
	}
	if err != nil {
		return nil, 0, 0, fmt.Errorf("writing customer states: %w", err)
	}
	var due []string
	for _, group := range groups {
		for _, counters := range []string{s.keys.Histogram(group[0]), s.keys.KPI(group[0])} {
			if s.folds.add(counters) {
				due = append(due, counters)
			}
		}
	}
	if err := s.foldJournals(ctx, due); err != nil {
		return nil, 0, 0, err
	}
	for i, group := range groups {
		idx, err := cmds[i].Int64Slice()
		if err != nil {
			return nil, 0, 0, fmt.Errorf("writing shards %v: %w", group, err)
		}
		bad := make(map[int64]bool, len(idx))
		for _, j := range idx {
			bad[j] = true
		}
		j := int64(0)
		for _, shard := range group {
			for _, p := range byShard[shard] {
				if bad[j] {
					conflicted = append(conflicted, p.id)
				} else {
					written++
					if len(p.update.Outbox) > 0 {
						outbox++
					}
				}
				j++
			}
		}
	}
	return conflicted, written, outbox, nil
}

// scriptArgs lays out one apply call (see apply.lua) for the customers of the given shards.
// Each customer's own arguments (version, value, deadline, outbox entry, increments) are
// appended to one buffer per call and passed as slices of it: built as strings, they were six
// allocations per customer and most of the store's share of a writer's CPU.
func (s *Store) scriptArgs(group []int, byShard map[int][]prepared) ([]string, []any) {
	n, size := 0, 0
	for _, shard := range group {
		for _, p := range byShard[shard] {
			n++
			size += argBytes(p.update)
		}
	}
	keys := make([]string, 0, 2+2*len(group)+2*n)
	args := make([]any, 0, 5+n*12)
	arena := make([]byte, 0, size)
	// since is the part of arena appended after start, capped so no append can reach past it.
	since := func(start int) []byte { return arena[start:len(arena):len(arena)] }
	// The increments go to the first shard's counter journals, summed over every customer of
	// the call: one entry per journal, less those of customers whose write the script refused.
	// Readers sum the shards' counters and journals, and read them atomically with the
	// deadlines of every shard a call can span (readCounters).
	keys = append(keys, s.keys.Journal(s.keys.Histogram(group[0])), s.keys.Journal(s.keys.KPI(group[0])))
	hist, kpi := map[string]int64{}, map[string]int64{}
	for _, shard := range group {
		keys = append(keys, s.keys.Outbox(shard), s.keys.Deadlines(shard))
		for _, p := range byShard[shard] {
			for f, d := range p.update.Histogram {
				hist[f] += d
			}
			for f, d := range p.update.KPI {
				kpi[f] += d
			}
		}
	}
	args = append(args, MaxTransitions, len(group), packTotals(hist), packTotals(kpi), s.keys.OutboxBell())
	for g, shard := range group {
		for _, p := range byShard[shard] {
			keys = append(keys, s.keys.Customer(p.id), s.keys.Transitions(p.id))
			start := len(arena)
			arena = strconv.AppendUint(arena, p.version, 10)
			args = append(args, g+1, p.id, since(start))
			if p.update.Value != nil {
				start = len(arena)
				arena = appendValue(arena, p.version+1, p.update.Value)
				args = append(args, "s", since(start))
			} else {
				args = append(args, "h", len(p.update.Fields))
				fields := make([]string, 0, len(p.update.Fields))
				for f := range p.update.Fields {
					fields = append(fields, f)
				}
				sort.Strings(fields) // deterministic command text, easier to debug
				for _, f := range fields {
					args = append(args, f, p.update.Fields[f])
				}
			}
			if p.update.Deadline.IsZero() {
				args = append(args, "")
			} else {
				start = len(arena)
				arena = strconv.AppendInt(arena, p.update.Deadline.UnixMilli(), 10)
				args = append(args, since(start))
			}
			// Each of these three is empty for none.
			start = len(arena)
			arena = appendOutbox(arena, p.update.Outbox)
			args = append(args, since(start))
			start = len(arena)
			arena = appendDeltas(arena, p.update.Histogram)
			args = append(args, since(start))
			start = len(arena)
			arena = appendDeltas(arena, p.update.KPI)
			args = append(args, since(start))
			args = append(args, len(p.update.Transitions))
			for _, t := range p.update.Transitions {
				args = append(args, t)
			}
		}
	}
	return keys, args
}

// argBytes bounds what a customer's own arguments take in scriptArgs' buffer, so the buffer
// is allocated once.
func argBytes(u Update) int {
	size := 2*maxDecimalLen + 1 + binary.MaxVarintLen64 + len(u.Value)
	if len(u.Outbox) > 0 {
		size++
		for _, e := range u.Outbox {
			size += len(e.Topic) + len(e.EventID) + len(e.Value) + 3*binary.MaxVarintLen32 + binary.MaxVarintLen64
		}
	}
	for _, deltas := range []map[string]int64{u.Histogram, u.KPI} {
		for f := range deltas {
			size += len(f) + 2 + maxDecimalLen
		}
	}
	return size
}

// maxDecimalLen is the longest decimal int64 or uint64, sign included.
const maxDecimalLen = 20

// appendOutbox appends a customer's derived events packed as the value of its one outbox
// entry (package outbox), or nothing for none.
func appendOutbox(dst []byte, events []OutboxEntry) []byte {
	if len(events) == 0 {
		return dst
	}
	return outbox.Pack(dst, events)
}

// appendDeltas appends one customer's increments as "field\tdelta\n" lines, which the script
// journals only when it refuses the customer's write (to take them off the call's totals).
func appendDeltas(dst []byte, deltas map[string]int64) []byte {
	for f, d := range deltas {
		dst = append(dst, f...)
		dst = append(dst, '\t')
		dst = strconv.AppendInt(dst, d, 10)
		dst = append(dst, '\n')
	}
	return dst
}

// Transitions returns the entries of the customer's transition list, newest first.
func (s *Store) Transitions(ctx context.Context, customerID string) ([]string, error) {
	out, err := s.rdb.LRange(ctx, s.keys.Transitions(customerID), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("reading the customer's transitions: %w", err)
	}
	return out, nil
}
