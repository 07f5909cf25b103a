package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loyalty-scoring/loyalty/pkg/config"
)

func TestTheOpsTokenIsReadFromTheVariableOrItsFileAndValidated(t *testing.T) {
	const token = "ops-token-0123456789abcdef"
	file := filepath.Join(t.TempDir(), "ops-token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, vars := range map[string]map[string]string{
		"the variable": {"OPS_BEARER_TOKEN": token},
		"the file":     {"OPS_BEARER_TOKEN_FILE": file},
	} {
		c, err := config.Load(env(vars), "")
		if err != nil || c.OpsToken != token {
			t.Errorf("%s: OpsToken %q, %v; want %q", name, c.OpsToken, err, token)
		}
	}
	if c, err := config.Load(env(nil), ""); err != nil || c.OpsToken != "" {
		t.Errorf("unset: OpsToken %q, %v; want none", c.OpsToken, err)
	}
	for name, vars := range map[string]map[string]string{
		"a short token":      {"OPS_BEARER_TOKEN": "short"},
		"both set":           {"OPS_BEARER_TOKEN": token, "OPS_BEARER_TOKEN_FILE": file},
		"an unreadable file": {"OPS_BEARER_TOKEN_FILE": file + ".missing"},
	} {
		if _, err := config.Load(env(vars), ""); err == nil || !strings.Contains(err.Error(), "OPS_BEARER_TOKEN") {
			t.Errorf("%s: error %v, want one naming OPS_BEARER_TOKEN", name, err)
		}
	}
}
