package scoring

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"
)

//go:embed default_policy.yaml
var defaultPolicyYAML []byte

// DefaultPolicyYAML returns the embedded default policy file, a starting
// point for a store's own.
func DefaultPolicyYAML() []byte { return bytes.Clone(defaultPolicyYAML) }

// DefaultPolicy returns the embedded default policy, parsed and validated.
func DefaultPolicy() *Policy {
	p, err := ParsePolicy(defaultPolicyYAML)
	if err != nil {
		panic("scoring: embedded default policy is invalid: " + err.Error())
	}
	return p
}

// ParsePolicy parses and validates a YAML policy. Unknown fields are errors
// (a misspelt threshold must not silently fall back to zero). A policy without a dedupe
// section, or with only part of one, gets DefaultDedupe for what it leaves out; a value
// given explicitly is validated as given.
func ParsePolicy(data []byte) (*Policy, error) {
	p := Policy{Dedupe: DefaultDedupe}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("parsing policy: %w", err)
	}
	if p.Segments.CutpointsEveryDays == 0 {
		p.Segments.CutpointsEveryDays = DefaultCutpointsEveryDays
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("validating policy %q: %w", p.Version, err)
	}
	return &p, nil
}

// LoadPolicy reads, parses and validates a YAML policy file.
func LoadPolicy(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading policy: %w", err)
	}
	p, err := ParsePolicy(data)
	if err != nil {
		return nil, fmt.Errorf("loading policy %s: %w", path, err)
	}
	return p, nil
}
