package redisconn_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
)

// A CA file is only read with TLS on, and a file that is missing or holds no certificate
// fails at start-up, naming it, instead of at the first connection.
func TestTheCAFileNeedsTLSAndAPEMCertificate(t *testing.T) {
	cfg := redisconn.Config{Addrs: []string{"127.0.0.1:6379"}, CAFile: "/etc/ssl/certs/ca-certificates.crt"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "CAFile") {
		t.Errorf("CAFile without TLS: %v", err)
	}
	_, err := config.Load(func(k string) string {
		return map[string]string{"REDIS_ADDR": "127.0.0.1:6379", "REDIS_CA_FILE": "/ca.pem"}[k]
	}, "")
	if err == nil || !strings.Contains(err.Error(), "REDIS_*: CAFile") {
		t.Errorf("REDIS_CA_FILE without REDIS_TLS: %v", err)
	}

	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{filepath.Join(dir, "missing.pem"): "reading CA file", notPEM: "holds no PEM certificate"} {
		cfg := redisconn.Config{Addrs: []string{"127.0.0.1:6379"}, TLS: true, CAFile: file}
		if c, err := redisconn.New(cfg); err == nil || !strings.Contains(err.Error(), want) {
			if c != nil {
				_ = c.Close()
			}
			t.Errorf("CA file %s: want %q, got %v", file, want, err)
		}
	}
}
