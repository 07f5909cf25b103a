package config_test

import (
	"strings"
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/config"
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
