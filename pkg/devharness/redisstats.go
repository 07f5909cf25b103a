package devharness

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
)

// Redis command accounting for bench-e2e: INFO commandstats read before and after the run,
// so the report says which commands Redis spent its CPU on, per input event. Redis counts a
// command a script calls both under its own name and inside the script's time (EVALSHA's
// usec includes its SETs and XADDs), so the rows overlap and do not add up to Redis's CPU.

// RedisCommand is one command's share of a run, from INFO commandstats.
type RedisCommand struct {
	Name  string `json:"name"`
	Calls int64  `json:"calls"`
	// Usec is the time Redis spent executing the command (not reading or writing sockets).
	Usec          int64   `json:"usec"`
	CallsPerEvent float64 `json:"calls_per_event"`
	UsecPerEvent  float64 `json:"usec_per_event"`
}

// commandStats is a reading of INFO commandstats: command → calls and usec so far.
type commandStats map[string][2]int64

// readCommandStats reads INFO commandstats (of one server: bench-e2e's Redis is one).
func readCommandStats(ctx context.Context, rdb redisconn.Client) (commandStats, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("INFO commandstats: %w", err)
	}
	return parseCommandStats(info)
}

// parseCommandStats parses the commandstats section: lines such as
// "cmdstat_get:calls=3,usec=12,usec_per_call=4.00,rejected_calls=0,failed_calls=0".
func parseCommandStats(info string) (commandStats, error) {
	out := commandStats{}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		name, fields, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
		if !ok || !strings.HasPrefix(line, "cmdstat_") {
			continue
		}
		var v [2]int64
		for _, kv := range strings.Split(fields, ",") {
			k, val, _ := strings.Cut(kv, "=")
			var i int
			switch k {
			case "calls":
				i = 0
			case "usec":
				i = 1
			default:
				continue
			}
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("commandstats %s: %s: %w", name, kv, err)
			}
			v[i] = n
		}
		out[name] = v
	}
	return out, nil
}

// since is the commands run between before and s, the most time first, with their calls and
// µs per input event.
func (s commandStats) since(before commandStats, events int) []RedisCommand {
	var out []RedisCommand
	for name, v := range s {
		calls, usec := v[0]-before[name][0], v[1]-before[name][1]
		if calls <= 0 {
			continue
		}
		n := float64(max(events, 1))
		out = append(out, RedisCommand{Name: strings.ToUpper(name), Calls: calls, Usec: usec,
			CallsPerEvent: float64(calls) / n, UsecPerEvent: float64(usec) / n})
	}
	slices.SortFunc(out, func(a, b RedisCommand) int {
		return cmp.Or(cmp.Compare(b.Usec, a.Usec), cmp.Compare(a.Name, b.Name))
	})
	return out
}
