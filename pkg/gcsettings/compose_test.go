package gcsettings

import (
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Every pipeline service of the compose file runs under a memory limit: it is what Apply
// reads from the container's cgroup to hold the Go heap under, and without one GOGC=400 lets a
// consumer's heap grow to several times what is live during a backlog.
func TestComposeLimitsEveryPipelineServicesMemory(t *testing.T) {
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			MemLimit string `yaml:"mem_limit"`
			Build    struct {
				Dockerfile string `yaml:"dockerfile"`
			} `yaml:"build"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	pipeline := 0
	for name, svc := range compose.Services {
		if !strings.HasPrefix(svc.Build.Dockerfile, "deploy/docker/") {
			continue // the infrastructure's images (Kafka, Redis, Grafana, ...)
		}
		pipeline++
		if svc.MemLimit == "" {
			t.Errorf("service %s has no mem_limit", name)
		}
	}
	if pipeline < 6 {
		t.Errorf("found %d pipeline services built from deploy/docker/, want the six (merge keys not read?)", pipeline)
	}
}
