package stream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// Security configures TLS and SASL towards the brokers. The zero value is plaintext, no
// authentication: enabling either is configuration, not code.
type Security struct {
	TLS    bool
	CAFile string // PEM bundle; empty uses the system pool
	// SASLMechanism is "", "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512".
	SASLMechanism string
	Username      string
	Password      string
}

// Validate reports the first problem, naming the field.
func (s Security) Validate() error {
	switch strings.ToUpper(s.SASLMechanism) {
	case "":
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if s.Username == "" {
			return errors.New("Username: required with SASL")
		}
	default:
		return fmt.Errorf("SASLMechanism: %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.SASLMechanism)
	}
	if s.CAFile != "" && !s.TLS {
		return errors.New("CAFile: set but TLS is off")
	}
	return nil
}

func (s Security) tlsConfig() (*tls.Config, error) {
	if !s.TLS {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", s.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

func (s Security) mechanism() (sasl.Mechanism, error) {
	switch strings.ToUpper(s.SASLMechanism) {
	case "":
		return nil, nil
	case "PLAIN":
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	case "SCRAM-SHA-256":
		return scram.Mechanism(scram.SHA256, s.Username, s.Password)
	default:
		return scram.Mechanism(scram.SHA512, s.Username, s.Password)
	}
}

func (s Security) dialer() (*kafka.Dialer, error) {
	tlsCfg, err := s.tlsConfig()
	if err != nil {
		return nil, err
	}
	mech, err := s.mechanism()
	if err != nil {
		return nil, fmt.Errorf("configuring SASL: %w", err)
	}
	return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: tlsCfg, SASLMechanism: mech}, nil
}

func (s Security) transport() (*kafka.Transport, error) {
	tlsCfg, err := s.tlsConfig()
	if err != nil {
		return nil, err
	}
	mech, err := s.mechanism()
	if err != nil {
		return nil, fmt.Errorf("configuring SASL: %w", err)
	}
	return &kafka.Transport{TLS: tlsCfg, SASL: mech, DialTimeout: 10 * time.Second}, nil
}

func validateBrokers(brokers []string) error {
	if len(brokers) == 0 {
		return errors.New("Brokers: at least one host:port is required")
	}
	for _, b := range brokers {
		if !strings.Contains(b, ":") {
			return fmt.Errorf("Brokers: %q is not host:port", b)
		}
	}
	return nil
}
