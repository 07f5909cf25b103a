package state

// Counter journals. A write's histogram and KPI increments used to be one HINCRBY per field,
// a third of the apply script's cost in Redis (a call of a few dozen customers carries a
// hundred or more distinct fields). Now the apply script appends the call's summed increments
// to the counter hash's journal (keyspace.Journal, a stream in the hash's slot) as one entry:
// 'd' the totals, packed "field\tdelta\n", and 'u', when it refused some customers' writes,
// their increments, to subtract. A counter's value is its hash field plus every journal entry
// still unfolded, and readers add both, atomically (readCounters). Writers fold the journals
// they append to every foldEvery entries: the entries' sum goes into the hash and the entries
// are trimmed, in one script that first checks the oldest entry it read is still there, so
// two folders never count an entry twice.

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
)

// foldEvery is how many entries a store appends to a journal before it folds it; foldBatch is
// how many of the oldest entries one fold takes (other writers' included).
const (
	foldEvery = 32
	foldBatch = 1024
)

// foldLua adds folded increments to a counter hash and trims the journal entries they came
// from, unless another folder already did.
// KEYS: the counter hash, its journal. ARGV: the oldest folded entry's id, the id just after
// the newest, then (field, delta)*.
var foldScript = redisconn.NewScript("state-fold-journal", `
if #redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1]) == 0 then
  return 0
end
for i = 3, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('XTRIM', KEYS[2], 'MINID', ARGV[2])
return 1`)

// packTotals packs a call's summed increments as "field\tdelta\n" lines in field order,
// leaving out those that sum to zero.
func packTotals(totals map[string]int64) string {
	fields := make([]string, 0, len(totals))
	for f, d := range totals {
		if d != 0 {
			fields = append(fields, f)
		}
	}
	sort.Strings(fields)
	var b []byte
	for _, f := range fields {
		b = append(b, f...)
		b = append(b, '\t')
		b = strconv.AppendInt(b, totals[f], 10)
		b = append(b, '\n')
	}
	return string(b)
}

// addPacked adds sign times the "field\tdelta\n" lines of packed to counters.
func addPacked(counters map[string]int64, packed string, sign int64) error {
	for packed != "" {
		line, rest, ok := strings.Cut(packed, "\n")
		if !ok {
			return fmt.Errorf("journal line %q has no end", packed)
		}
		field, text, ok := strings.Cut(line, "\t")
		if !ok {
			return fmt.Errorf("journal line %q has no delta", line)
		}
		d, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return fmt.Errorf("journal line %q: %w", line, err)
		}
		counters[field] += sign * d
		packed = rest
	}
	return nil
}

// addEntry adds one journal entry's increments ('d' less 'u') to counters, given the entry's
// flat field/value list.
func addEntry(counters map[string]int64, flat []any) error {
	for j := 0; j+1 < len(flat); j += 2 {
		name, _ := flat[j].(string)
		packed, _ := flat[j+1].(string)
		switch name {
		case "d":
			if err := addPacked(counters, packed, 1); err != nil {
				return err
			}
		case "u":
			if err := addPacked(counters, packed, -1); err != nil {
				return err
			}
		default:
			return fmt.Errorf("journal entry with field %q", name)
		}
	}
	return nil
}

// journalFolds counts the entries a store appended to each journal since it last folded it.
type journalFolds struct {
	mu       sync.Mutex
	appended map[string]int // journal's counter hash → entries
}

// add counts one appended entry to the counter hash's journal and reports whether it is due
// a fold.
func (j *journalFolds) add(counters string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.appended == nil {
		j.appended = map[string]int{}
	}
	j.appended[counters]++
	return j.appended[counters] >= foldEvery
}

func (j *journalFolds) reset(counters string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.appended, counters)
}

// foldJournal folds up to foldBatch of the oldest entries of the counter hash's journal into
// it, and reports how many it read (0: the journal was empty).
func (s *Store) foldJournal(ctx context.Context, counters string) (int, error) {
	journal := s.keys.Journal(counters)
	entries, err := s.rdb.XRangeN(ctx, journal, "-", "+", foldBatch).Result()
	if err != nil {
		return 0, fmt.Errorf("reading the counter journal %s: %w", journal, err)
	}
	if len(entries) == 0 {
		return 0, nil
	}
	sums := map[string]int64{}
	for _, e := range entries {
		for name, v := range e.Values {
			packed, _ := v.(string)
			sign := int64(1)
			switch name {
			case "d":
			case "u":
				sign = -1
			default:
				return 0, fmt.Errorf("counter journal %s entry %s has field %q", journal, e.ID, name)
			}
			if err := addPacked(sums, packed, sign); err != nil {
				return 0, fmt.Errorf("counter journal %s entry %s: %w", journal, e.ID, err)
			}
		}
	}
	after, err := nextStreamID(entries[len(entries)-1].ID)
	if err != nil {
		return 0, err
	}
	fields := make([]string, 0, len(sums))
	for f, d := range sums {
		if d != 0 {
			fields = append(fields, f)
		}
	}
	sort.Strings(fields)
	args := make([]any, 0, 2+2*len(fields))
	args = append(args, entries[0].ID, after)
	for _, f := range fields {
		args = append(args, f, sums[f])
	}
	if err := foldScript.Run(ctx, s.rdb, []string{counters, journal}, args...).Err(); err != nil {
		return 0, fmt.Errorf("folding the counter journal %s: %w", journal, err)
	}
	return len(entries), nil
}

// foldJournals folds the journals the store has appended foldEvery entries to since it last
// folded them.
func (s *Store) foldJournals(ctx context.Context, due []string) error {
	for _, counters := range due {
		if _, err := s.foldJournal(ctx, counters); err != nil {
			return err
		}
		s.folds.reset(counters)
	}
	return nil
}

// foldAll folds the counter hash's whole journal (bounded: entries appended meanwhile by
// other writers may be left).
func (s *Store) foldAll(ctx context.Context, counters string) error {
	for range 64 {
		n, err := s.foldJournal(ctx, counters)
		if err != nil || n < foldBatch {
			return err
		}
	}
	return nil
}

// nextStreamID returns the smallest stream id after id ("ms-seq").
func nextStreamID(id string) (string, error) {
	ms, seq, ok := strings.Cut(id, "-")
	if !ok {
		return "", fmt.Errorf("stream id %q", id)
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return "", fmt.Errorf("stream id %q: %w", id, err)
	}
	return ms + "-" + strconv.FormatUint(n+1, 10), nil
}
