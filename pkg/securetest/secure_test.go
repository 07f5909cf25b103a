package securetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/loyalty-scoring/loyalty/pkg/config"
	"github.com/loyalty-scoring/loyalty/pkg/embedded"
	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/freeport"
	"github.com/loyalty-scoring/loyalty/pkg/redisconn"
	"github.com/loyalty-scoring/loyalty/pkg/scoring"
	"github.com/loyalty-scoring/loyalty/pkg/stream"
	"github.com/loyalty-scoring/loyalty/pkg/wiring"
)

const user = "loyalty"

// TestThePipelineRunsOverSASLSCRAMAndTLSToKafkaAndTLSWithAnACLUserToRedis starts a Kafka
// 4.x broker whose client listener is SASL_SSL with SCRAM-SHA-512 and a redis-server that
// serves TLS only to an ACL user (the default user is off), both with certificates of a CA
// the test makes. It runs the purchases consumer, the relay and the sweeper configured from
// environment variables only (KAFKA_TLS, KAFKA_CA_FILE, KAFKA_SASL_MECHANISM, REDIS_TLS,
// REDIS_CA_FILE, ...), produces purchases over SASL_SSL, and reads the customers' states back
// from Redis over TLS as the ACL user and the tier changes back from Kafka over SASL_SSL. A
// wrong password, and a client that does not trust the CA, are refused by both.
func TestThePipelineRunsOverSASLSCRAMAndTLSToKafkaAndTLSWithAnACLUserToRedis(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	pki := makePKI(t, dir)
	kafkaPassword, redisPassword := randomHex(t), randomHex(t)

	rds, err := embedded.StartTLSRedisServer(ctx, filepath.Join(dir, "redis"), embedded.TLSRedisOptions{
		CertFile: pki.certFile, KeyFile: pki.keyFile, CAFile: pki.caFile,
		Users: []string{user + " on >" + redisPassword + " ~* &* +@all"},
	})
	if errors.Is(err, embedded.ErrNoRedisServer) {
		t.Fatalf("this test needs redis-server with TLS support: %v", err)
	}
	if err != nil {
		t.Fatalf("starting redis-server with TLS: %v", err)
	}
	t.Cleanup(func() { _ = rds.Close() })
	brokers := startSecureKafka(ctx, t, filepath.Join(dir, "kafka"), pki, kafkaPassword)

	vars := map[string]string{
		"KAFKA_BROKERS": brokers, "KAFKA_TLS": "true", "KAFKA_CA_FILE": pki.caFile,
		"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_USERNAME": user, "KAFKA_PASSWORD": kafkaPassword,
		"REDIS_ADDR": rds.Addr, "REDIS_TLS": "true", "REDIS_CA_FILE": pki.caFile,
		"REDIS_USERNAME": user, "REDIS_PASSWORD": redisPassword,
		"HTTP_ADDR": "off", "KAFKA_PARTITIONS": "3", "LOYALTY_SHARDS": "8", "BATCH_LINGER": "10ms",
	}
	cfg, err := config.Load(func(k string) string { return vars[k] }, "")
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	rt, err := wiring.NewRuntime(ctx, cfg, log, wiring.Options{})
	if err != nil {
		t.Fatalf("starting the runtime over SASL_SSL and Redis TLS: %v", err)
	}
	t.Cleanup(rt.Close)

	// The negatives first, on the broker and server the pipeline is about to use.
	t.Run("kafka refuses a wrong password", func(t *testing.T) {
		sec := cfg.KafkaSecurity
		sec.Password = "not-" + kafkaPassword
		err := partitionCount(ctx, cfg.KafkaBrokers, sec, log, rt.Topic(event.TopicPurchases))
		// kafka-go's error 58, SASL_AUTHENTICATION_FAILED, with the broker's reason.
		if err == nil || !strings.Contains(err.Error(), "[58] SASL Authentication Failed") || !strings.Contains(err.Error(), "invalid credentials") {
			t.Fatalf("want SASL authentication failed for invalid credentials, got %v", err)
		}
		t.Logf("refused: %v", err)
	})
	t.Run("kafka clients that do not trust the CA refuse the broker", func(t *testing.T) {
		sec := cfg.KafkaSecurity
		sec.CAFile = ""
		err := partitionCount(ctx, cfg.KafkaBrokers, sec, log, rt.Topic(event.TopicPurchases))
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Fatalf("want an unknown-authority TLS error, got %v", err)
		}
	})
	t.Run("redis refuses a wrong password and the default user", func(t *testing.T) {
		for _, c := range []struct{ user, password, want string }{
			{user, "not-" + redisPassword, "WRONGPASS"},
			{"", "", "NOAUTH"},
		} {
			rc := cfg.Redis
			rc.Username, rc.Password = c.user, c.password
			cl, err := redisconn.New(rc)
			if err != nil {
				t.Fatal(err)
			}
			err = cl.Ping(ctx).Err()
			_ = cl.Close()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("user %q: want %s, got %v", c.user, c.want, err)
			}
		}
	})
	t.Run("redis clients that do not trust the CA refuse the server", func(t *testing.T) {
		rc := cfg.Redis
		rc.CAFile = ""
		cl, err := redisconn.New(rc)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		var unknown x509.UnknownAuthorityError
		if err := cl.Ping(ctx).Err(); !errors.As(err, &unknown) {
			t.Fatalf("want an unknown-authority TLS error, got %v", err)
		}
	})
	if t.Failed() {
		return
	}

	tiers := collectTierChanges(ctx, t, cfg, rt, log)
	stop := runServices(t, rt)
	defer stop()

	// 40 customers, 8 purchases each over the last month: the even ones spend 8 x 100.00,
	// past SILVER's 500.00, the odd ones 8 x 20.00, which stays BRONZE.
	now := time.Now().UTC()
	var customers, upgraded []string
	var recs []stream.Record
	for c := range 40 {
		id := fmt.Sprintf("secure-c%02d", c)
		customers = append(customers, id)
		amount := int64(2000)
		if c%2 == 0 {
			amount = 10000
			upgraded = append(upgraded, id)
		}
		for p := range 8 {
			in := event.Purchase{EventID: fmt.Sprintf("%s-p%d", id, p), CustomerID: id,
				OccurredAt: now.AddDate(0, 0, -30+3*p).Truncate(time.Second), OrderID: fmt.Sprintf("%s-o%d", id, p),
				Kind: event.KindPurchase, AmountMinor: amount, Currency: "USD"}
			v, err := rt.Codec.Encode(in)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, stream.Record{Topic: rt.Topic(event.TopicPurchases), Key: []byte(id), Value: v})
		}
	}
	if err := rt.Producer.Produce(ctx, recs...); err != nil {
		t.Fatalf("producing %d purchases over SASL_SSL: %v", len(recs), err)
	}

	// Every customer's state is in Redis, read over TLS as the ACL user, with its 8 purchase
	// days and its tier.
	reader, err := redisconn.New(cfg.Redis)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	for i, id := range customers {
		st := waitForState(ctx, t, reader, rt.Keys.Customer(id))
		want := "BRONZE"
		if i%2 == 0 {
			want = "SILVER"
		}
		if got := rt.Policy.TierName(int(st.Tier)); got != want {
			t.Errorf("%s's state has tier %s, want %s", id, got, want)
		}
	}

	// The tier changes reached their topic, read back over SASL_SSL: one upgrade to SILVER
	// for each big spender, for nobody else.
	got := tiers.waitFor(ctx, t, len(upgraded))
	var ids []string
	for _, tc := range got {
		ids = append(ids, tc.CustomerID)
		if tc.FromTier != event.TierBronze || tc.ToTier != event.TierSilver || tc.Direction != event.DirectionUp {
			t.Errorf("tier change of %s: %+v", tc.CustomerID, tc)
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, upgraded) {
		t.Errorf("tier changes for %v, want one each for %v", ids, upgraded)
	}
}

// waitForState reads a customer's state hash over the client until it holds the 8 purchase
// days the test produced, failing when ctx ends first.
func waitForState(ctx context.Context, t *testing.T, rdb redisconn.Client, key string) scoring.State {
	t.Helper()
	for {
		raw, err := rdb.Get(ctx, key).Bytes()
		if err != nil {
			if n, xerr := rdb.Exists(ctx, key).Result(); xerr != nil || n != 0 {
				t.Fatalf("reading %s over TLS: %v", key, err)
			}
			raw = nil // not written yet
		}
		if len(raw) > 0 {
			// The store's compact value: a magic byte, the version, then the state.
			_, n := binary.Uvarint(raw[1:])
			var st scoring.State
			if err := st.UnmarshalBinary(raw[1+n:]); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			if st.PurchaseDays == 8 {
				return st
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("%s never showed its 8 purchase days; last read: %x", key, raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// partitionCount asks the broker about topic with a fresh admin client of sec.
func partitionCount(ctx context.Context, brokers []string, sec stream.Security, log *zap.Logger, topic string) error {
	admin, err := stream.NewAdmin(brokers, sec, log)
	if err != nil {
		return err
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = admin.PartitionCount(ctx, topic)
	if err == nil {
		return errors.New("the broker answered")
	}
	return err
}

// runServices runs the purchases consumer, the relay and the sweeper in-process until the
// returned function is called.
func runServices(t *testing.T, rt *wiring.Runtime) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	run("purchases", func(ctx context.Context) error {
		return wiring.RunConsumer(ctx, rt, wiring.ConsumerConfig{Service: "purchases", Topics: []string{event.TopicPurchases}})
	})
	run("relay", func(ctx context.Context) error { return wiring.RunRelay(ctx, rt, nil) })
	run("sweeper", func(ctx context.Context) error { return wiring.RunSweeper(ctx, rt) })
	return func() { cancel(); wg.Wait() }
}

// tierChanges collects the tier changes a consumer group reads from the derived topic.
type tierChanges struct {
	mu     sync.Mutex
	events []event.TierChanged
	errs   []error
}

func collectTierChanges(ctx context.Context, t *testing.T, cfg config.Common, rt *wiring.Runtime, log *zap.Logger) *tierChanges {
	tc := &tierChanges{}
	c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: cfg.KafkaBrokers, Security: cfg.KafkaSecurity,
		GroupID: "securetest-collect", Topics: []string{rt.Topic(event.TopicTierChanges)}, Linger: 5 * time.Millisecond},
		stream.HandlerFunc(func(ctx context.Context, b *stream.Batch) error {
			tc.mu.Lock()
			defer tc.mu.Unlock()
			for _, m := range b.Messages {
				ev, err := rt.Codec.Decode(ctx, m.Value)
				if err != nil {
					tc.errs = append(tc.errs, fmt.Errorf("a tier-changes record does not decode: %w", err))
					continue
				}
				if v, ok := ev.(event.TierChanged); ok {
					tc.events = append(tc.events, v)
				} else {
					tc.errs = append(tc.errs, fmt.Errorf("a tier-changes record is a %T", ev))
				}
			}
			return nil
		}), nil, log)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("tier-changes consumer: %v", err)
		}
	})
	return tc
}

// waitFor returns the tier changes once there are n, failing on any bad record or when ctx
// ends first.
func (tc *tierChanges) waitFor(ctx context.Context, t *testing.T, n int) []event.TierChanged {
	t.Helper()
	for {
		tc.mu.Lock()
		evs, errs := slices.Clone(tc.events), errors.Join(tc.errs...)
		tc.mu.Unlock()
		if errs != nil {
			t.Fatal(errs)
		}
		if len(evs) >= n {
			return evs
		}
		if ctx.Err() != nil {
			t.Fatalf("%d tier changes arrived, want %d: %+v", len(evs), n, evs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startSecureKafka starts a single-node Kafka with deploy/local/kafka/kafka.sh in runDir, with
// a SASL_SSL listener (SCRAM-SHA-512, user loyalty created at storage format) beside the
// script's PLAINTEXT listener, which its readiness check and the controller use, and returns
// the SASL_SSL bootstrap address. The broker is killed when the test ends.
func startSecureKafka(ctx context.Context, t *testing.T, runDir string, pki pki, password string) string {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "..", "deploy", "local", "kafka", "kafka.sh"))
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 3)
	plain, controller, secure := ports[0], ports[1], ports[2]
	extra := filepath.Join(t.TempDir(), "sasl-ssl.properties")
	props := fmt.Sprintf(`listeners=PLAINTEXT://127.0.0.1:%[1]d,CONTROLLER://127.0.0.1:%[2]d,SASL_SSL://127.0.0.1:%[3]d
advertised.listeners=PLAINTEXT://127.0.0.1:%[1]d,CONTROLLER://127.0.0.1:%[2]d,SASL_SSL://127.0.0.1:%[3]d
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=%[4]s
ssl.truststore.type=PEM
ssl.truststore.location=%[5]s
ssl.client.auth=none
`, plain, controller, secure, pki.keystoreFile, pki.caFile)
	if err := os.WriteFile(extra, []byte(props), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "KAFKA_RUN_DIR="+runDir, "KAFKA_PORT="+strconv.Itoa(plain),
		"KAFKA_CONTROLLER_PORT="+strconv.Itoa(controller), "KAFKA_EXTRA_CONFIG="+extra,
		"KAFKA_FORMAT_ARGS=--add-scram SCRAM-SHA-512=[name="+user+",password="+password+"]",
		"KAFKA_HEAP_OPTS=-Xms128m -Xmx512m", "KAFKA_NUM_PARTITIONS=3")
	run := func(args ...string) {
		cmd := exec.CommandContext(ctx, script, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("this test starts a Kafka broker of its own with %s (Java 17+, and the jars, which "+
				"`kafka.sh fetch` downloads with mvn): kafka.sh %s: %v\n%s", script, args[0], err, out)
		}
		t.Logf("kafka.sh %s: %s", args[0], strings.TrimSpace(string(out)))
	}
	run("fetch")
	t.Cleanup(func() { killBroker(t, runDir) })
	run("start")
	return "127.0.0.1:" + strconv.Itoa(secure)
}

// killBroker kills the broker of runDir by the pid kafka.sh recorded (its data is thrown
// away, so there is nothing to shut down cleanly) and waits until it is gone.
func killBroker(t *testing.T, runDir string) {
	b, err := os.ReadFile(filepath.Join(runDir, "kafka.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for range 200 {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Errorf("kafka pid %d still running after SIGKILL", pid)
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for len(ports) < n {
		port, err := freeport.Port()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(ports, port) {
			ports = append(ports, port)
		}
	}
	return ports
}

func randomHex(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// pki is the test's CA and the server certificate both servers present.
type pki struct {
	caFile       string // the CA certificate, PEM
	certFile     string // the server certificate, PEM
	keyFile      string // its private key, PKCS#8 PEM
	keystoreFile string // key and certificate in one file, Kafka's PEM keystore
}

// makePKI makes a CA and a server certificate for 127.0.0.1 and localhost signed by it.
func makePKI(t *testing.T, dir string) pki {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	notBefore := time.Now().Add(-time.Hour)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "loyalty securetest CA"},
		NotBefore: notBefore, NotAfter: notBefore.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: notBefore, NotAfter: notBefore.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	p := pki{caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "server.crt"),
		keyFile: filepath.Join(dir, "server.key"), keystoreFile: filepath.Join(dir, "server-keystore.pem")}
	for file, data := range map[string][]byte{p.caFile: caPEM, p.certFile: certPEM, p.keyFile: keyPEM,
		p.keystoreFile: append(append([]byte(nil), keyPEM...), certPEM...)} {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}
