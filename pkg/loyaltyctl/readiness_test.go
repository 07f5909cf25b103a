package loyaltyctl

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/loyalty-scoring/loyalty/pkg/ops"
)

func TestStatusSendsTheOpsTokenToReadyz(t *testing.T) {
	const token = "ops-token-0123456789abcdef"
	s := ops.NewServer(zap.NewNop())
	s.AddCheck("redis", func(context.Context) error { return errors.New("connection refused") })
	if err := s.RequireToken(token); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	client := &http.Client{Timeout: 2 * time.Second}

	h := readiness(context.Background(), client, "sweeper", addr, token)
	if h.Ready || !strings.Contains(h.Detail, "503") || !strings.Contains(h.Detail, "redis: connection refused") {
		t.Errorf("with the token: %+v, want not ready with the failing check", h)
	}
	h = readiness(context.Background(), client, "sweeper", addr, "ops-token-0123456789abcdeX")
	if h.Ready || !strings.Contains(h.Detail, "401") || !strings.Contains(h.Detail, "OPS_BEARER_TOKEN") {
		t.Errorf("with a wrong token: %+v, want 401 naming OPS_BEARER_TOKEN", h)
	}
	h = readiness(context.Background(), client, "sweeper", addr, "")
	if h.Ready || !strings.Contains(h.Detail, "503") || strings.Contains(h.Detail, "connection refused") {
		t.Errorf("without a token: %+v, want the verdict only", h)
	}
}
