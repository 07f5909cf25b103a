package embedded

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/loyalty-scoring/loyalty/pkg/freeport"
)

// TLSRedisOptions configures StartTLSRedisServer.
type TLSRedisOptions struct {
	// CertFile and KeyFile are the server's certificate and private key (PEM); the certificate
	// must name 127.0.0.1.
	CertFile, KeyFile string
	// CAFile is the CA bundle (PEM) redis-server loads and the readiness check trusts.
	CAFile string
	// Users are ACL rules, one user each ("loyalty on >secret ~* &* +@all"); the default user
	// is switched off, so every client has to authenticate as one of them.
	Users []string
}

// ErrNoTLSRedis is returned by StartTLSRedisServer when redis-server exits at start
// complaining about TLS: built without it, or refusing the certificates.
var ErrNoTLSRedis = errors.New("redis-server could not serve TLS; if it was built without TLS support, install one built with it " +
	"(Debian/Ubuntu's redis-server 6+ is: apt-get install -y redis-server; from source: make BUILD_TLS=yes)")

// StartTLSRedisServer starts redis-server as a child process that serves TLS only (no
// plaintext port) on a free loopback port, with the ACL users of opts and its files under dir,
// and waits until it answers over TLS. Clients need not present a certificate.
func StartTLSRedisServer(ctx context.Context, dir string, opts TLSRedisOptions) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNoRedisServer
	}
	caPEM, err := os.ReadFile(opts.CAFile)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", opts.CAFile)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating redis dir: %w", err)
	}
	var lastErr error
	for range 5 {
		port, err := freeport.Port()
		if err != nil {
			return nil, err
		}
		r, err := startTLSRedisOn(ctx, bin, dir, port, opts, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
		if err == nil || ctx.Err() != nil || errors.Is(err, ErrNoTLSRedis) {
			return r, err
		}
		lastErr = err
	}
	return nil, lastErr
}

func startTLSRedisOn(ctx context.Context, bin, dir string, port int, opts TLSRedisOptions, clientTLS *tls.Config) (*Redis, error) {
	logFile := filepath.Join(dir, "redis.log")
	args := []string{"--bind", "127.0.0.1", "--port", "0", "--tls-port", strconv.Itoa(port),
		"--tls-cert-file", opts.CertFile, "--tls-key-file", opts.KeyFile, "--tls-ca-cert-file", opts.CAFile,
		"--tls-auth-clients", "no", "--dir", dir, "--save", "", "--appendonly", "no", "--logfile", logFile,
		"--protected-mode", "yes", "--user", "default", "off"}
	for _, u := range opts.Users {
		args = append(args, "--user")
		args = append(args, strings.Fields(u)...)
	}
	r, err := launchRedis(ctx, bin, args, logFile, "127.0.0.1:"+strconv.Itoa(port),
		func(addr string) error { return tlsPing(addr, clientTLS) })
	var exited *exitedAtStart
	if errors.As(err, &exited) && strings.Contains(exited.tail, "TLS") && !strings.Contains(exited.tail, "Address already in use") {
		return nil, fmt.Errorf("%w: %w", err, ErrNoTLSRedis)
	}
	return r, err
}

// tlsPing completes a TLS handshake with addr and checks that it answers PING with a RESP
// reply: PONG, or NOAUTH since the default user is off.
func tlsPing(addr string, cfg *tls.Config) error {
	d := &net.Dialer{Timeout: 200 * time.Millisecond}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("unexpected PING reply %q", line)
	}
	return nil
}
