package config_test

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
)

func env(m map[string]string) config.Env { return func(k string) string { return m[k] } }

func TestDefaultsAreUsableOnALaptop(t *testing.T) {
	c, err := config.Load(env(nil), "127.0.0.1:9101")
	if err != nil {
		t.Fatal(err)
	}
	if c.Namespace != "live" || c.KafkaBrokers[0] != "127.0.0.1:9092" || c.Redis.Addrs[0] != "127.0.0.1:6379" || c.HTTPAddr != "127.0.0.1:9101" {
		t.Fatalf("%+v", c)
	}
}

func TestEveryBadVariableIsReportedByName(t *testing.T) {
	_, err := config.Load(env(map[string]string{
		"BATCH_SIZE": "zero", "BATCH_LINGER": "soon", "REDIS_DB": "99", "KAFKA_SASL_MECHANISM": "KERBEROS",
		"LOYALTY_NAMESPACE": "bad name", "LOG_LEVEL": "loud", "REDIS_CLUSTER": "maybe", "LOYALTY_TOPIC_SUFFIX": "a/b",
	}), "")
	if err == nil {
		t.Fatal("no error")
	}
	for _, name := range []string{"BATCH_SIZE", "BATCH_LINGER", "REDIS_DB", "KAFKA_", "LOYALTY_NAMESPACE", "LOG_LEVEL", "REDIS_CLUSTER", "LOYALTY_TOPIC_SUFFIX"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestEveryVariableLoadReadsIsDeclared(t *testing.T) {
	// The parser reports reading an undeclared variable, so defaults load without error only
	// when the usage table lists every variable.
	if _, err := config.Load(env(nil), ""); err != nil {
		t.Fatal(err)
	}
}

func TestHelpListsTheVariablesAndOtherArgumentsAreErrors(t *testing.T) {
	vars := config.Vars("127.0.0.1:9105")
	for _, arg := range []string{"-h", "-help", "--help"} {
		var out, errOut bytes.Buffer
		code, exit := config.CheckArgs([]string{arg}, "sweeper", "Sweeps.", vars, &out, &errOut)
		if code != 0 || !exit || errOut.Len() != 0 {
			t.Fatalf("%s: code %d exit %v stderr %q", arg, code, exit, errOut.String())
		}
		for _, v := range vars {
			if !strings.Contains(out.String(), v.Name) {
				t.Errorf("%s: usage does not list %s:\n%s", arg, v.Name, out.String())
			}
		}
		if !strings.Contains(out.String(), "127.0.0.1:9105") || !strings.Contains(out.String(), "micro-batch size") {
			t.Errorf("%s: usage lacks defaults or meanings:\n%s", arg, out.String())
		}
	}
	for _, args := range [][]string{{"--bogus"}, {"run"}, {"-h", "extra"}} {
		var out, errOut bytes.Buffer
		code, exit := config.CheckArgs(args, "sweeper", "Sweeps.", vars, &out, &errOut)
		if code != 2 || !exit || out.Len() != 0 || !strings.Contains(errOut.String(), args[0]) {
			t.Errorf("%v: code %d exit %v stdout %q stderr %q", args, code, exit, out.String(), errOut.String())
		}
	}
	if _, exit := config.CheckArgs(nil, "sweeper", "Sweeps.", vars, io.Discard, io.Discard); exit {
		t.Error("no arguments: the service should start")
	}
}

func TestTopicRetentionsDefaultLongEnoughForReplayAndAreValidated(t *testing.T) {
	c, err := config.Load(env(nil), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.InputRetention != 400*24*time.Hour || c.OutputRetention != 30*24*time.Hour {
		t.Fatalf("defaults: input %v, output %v; want 400 and 30 days", c.InputRetention, c.OutputRetention)
	}
	if c.InputRetention < 365*24*time.Hour {
		t.Fatalf("input retention %v is shorter than the 365-day tier window a replay reads", c.InputRetention)
	}
	for v, want := range map[string]time.Duration{"infinite": stream.RetentionInfinite, "-1": stream.RetentionInfinite,
		"72h": 72 * time.Hour, "7d": 7 * 24 * time.Hour, "INFINITE": stream.RetentionInfinite} {
		c, err := config.Load(env(map[string]string{"KAFKA_INPUT_RETENTION": v, "KAFKA_OUTPUT_RETENTION": v}), "")
		if err != nil || c.InputRetention != want || c.OutputRetention != want {
			t.Errorf("%q: input %v, output %v, %v; want %v", v, c.InputRetention, c.OutputRetention, err, want)
		}
	}
	for _, v := range []string{"0", "0s", "-5d", "-2h", "soon", "d", "1.5d", "-2"} {
		_, err := config.Load(env(map[string]string{"KAFKA_INPUT_RETENTION": v, "KAFKA_OUTPUT_RETENTION": v}), "")
		if err == nil || !strings.Contains(err.Error(), "KAFKA_INPUT_RETENTION") || !strings.Contains(err.Error(), "KAFKA_OUTPUT_RETENTION") {
			t.Errorf("%q: got %v, want both variables named", v, err)
		}
	}
}

func TestTopicSpecGivesEachRoleItsRetention(t *testing.T) {
	c := config.Common{Partitions: 3, ReplicationFactor: 2, InputRetention: 400 * 24 * time.Hour, OutputRetention: time.Hour}
	in := c.TopicSpec("in", event.RoleInput)
	if in.Name != "in" || in.Partitions != 3 || in.ReplicationFactor != 2 || in.Retention != 400*24*time.Hour ||
		in.MaxTimestampAhead != stream.DefaultMaxTimestampAhead {
		t.Errorf("input: %+v, want the input retention and producers' clocks bounded", in)
	}
	for _, role := range []event.Role{event.RoleDerived, event.RoleAction, event.RoleDeadLetter} {
		if s := c.TopicSpec("out", role); s.Retention != time.Hour || s.MaxTimestampAhead != 0 {
			t.Errorf("role %d: %+v, want the output retention and the broker's timestamp default", role, s)
		}
	}
	// The erasures topic is the durable suppression list: kept forever, compacted.
	if s := c.TopicSpec("erasures", event.RoleErasure); s.Retention != stream.RetentionInfinite || s.Config["cleanup.policy"] != "compact" {
		t.Errorf("erasures: %+v, want infinite retention and compaction", s)
	}
}

// The dead-letter writer's record limit defaults to stream.DefaultMaxRecordBytes and refuses
// limits an envelope cannot fit in.
func TestDeadLetterRecordLimitDefaultsAndIsValidated(t *testing.T) {
	c, err := config.Load(env(nil), "")
	if err != nil || c.DeadLetterMaxRecordBytes != stream.DefaultMaxRecordBytes {
		t.Fatalf("default %d, %v; want %d", c.DeadLetterMaxRecordBytes, err, stream.DefaultMaxRecordBytes)
	}
	if c, err := config.Load(env(map[string]string{"KAFKA_DLQ_MAX_RECORD_BYTES": "2097152"}), ""); err != nil || c.DeadLetterMaxRecordBytes != 2<<20 {
		t.Errorf("2097152: %d, %v", c.DeadLetterMaxRecordBytes, err)
	}
	for _, v := range []string{"1000", "0", "-1", "1MB"} {
		if _, err := config.Load(env(map[string]string{"KAFKA_DLQ_MAX_RECORD_BYTES": v}), ""); err == nil || !strings.Contains(err.Error(), "KAFKA_DLQ_MAX_RECORD_BYTES") {
			t.Errorf("%q: got %v, want an error naming the variable", v, err)
		}
	}
}

// MEMORY_LIMIT_RATIO defaults to 0.9 of the container's limit, takes "off" or 0 for none and
// refuses anything outside 0..1 by name.
func TestMemoryLimitRatioDefaultsToNinetyPercent(t *testing.T) {
	for v, want := range map[string]float64{"": 0.9, "0.75": 0.75, "1": 1, "0": 0, "off": 0, "OFF": 0} {
		c, err := config.Load(env(map[string]string{"MEMORY_LIMIT_RATIO": v}), "")
		if err != nil || c.MemoryLimitRatio != want {
			t.Errorf("MEMORY_LIMIT_RATIO=%q: %v, %v; want %v", v, c.MemoryLimitRatio, err, want)
		}
	}
	for _, v := range []string{"1.5", "-0.1", "90%", "NaN", "half"} {
		if _, err := config.Load(env(map[string]string{"MEMORY_LIMIT_RATIO": v}), ""); err == nil || !strings.Contains(err.Error(), "MEMORY_LIMIT_RATIO") {
			t.Errorf("MEMORY_LIMIT_RATIO=%q: got %v, want an error naming the variable", v, err)
		}
	}
}

// GOGC defaults to 400 for the services, takes Go's own syntax ("off" included) and refuses
// anything else by name.
func TestGCTargetDefaultsTo400AndReadsGoSyntax(t *testing.T) {
	for v, want := range map[string]int{"": 400, "100": 100, "off": -1, "OFF": -1, "2000": 2000} {
		c, err := config.Load(env(map[string]string{"GOGC": v}), "")
		if err != nil || c.GCPercent != want {
			t.Errorf("GOGC=%q: %d, %v; want %d", v, c.GCPercent, err, want)
		}
	}
	for _, v := range []string{"0", "-5", "fast", "1.5"} {
		if _, err := config.Load(env(map[string]string{"GOGC": v}), ""); err == nil || !strings.Contains(err.Error(), "GOGC") {
			t.Errorf("GOGC=%q: got %v, want an error naming the variable", v, err)
		}
	}
}
