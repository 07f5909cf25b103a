// Package schemas holds the Avro contracts of every event the pipeline reads or writes,
// embedded into the binaries, and the manifest that gives each schema version its stable
// Schema Registry ID for the embedded registry.
//
// The manifest is the public contract's table of contents: a schema's name, the topic whose
// value it describes (subject "<topic>-value", Confluent's TopicNameStrategy), and every
// version ever published. Versions are append-only; each new one must stay backward
// compatible with all earlier ones (the tests in this package check it).
package schemas

import (
	"embed"
	"encoding/json"
	"fmt"
	"sort"
)

//go:embed manifest.json avro
var files embed.FS

// Version is one published version of a schema.
type Version struct {
	Version int    `json:"version"`
	ID      int    `json:"id"`
	File    string `json:"file"`
	// Text is the schema's JSON text, read from File.
	Text string `json:"-"`
}

// Schema is one event contract with all its published versions, oldest first.
type Schema struct {
	Name     string    `json:"name"`
	Topic    string    `json:"topic"`
	Versions []Version `json:"versions"`
}

// Subject is the Schema Registry subject of the schema: "<topic>-value".
func (s Schema) Subject() string { return s.Topic + "-value" }

// Latest is the newest version, the one producers write with.
func (s Schema) Latest() Version { return s.Versions[len(s.Versions)-1] }

type manifest struct {
	Schemas []Schema `json:"schemas"`
}

// All returns every schema of the manifest, with the text of each version loaded.
// It fails if the manifest is inconsistent (duplicate IDs or names, versions out of order,
// a missing file), so a bad edit to schemas/ is caught by the first test that loads it.
func All() ([]Schema, error) {
	raw, err := files.ReadFile("manifest.json")
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("parsing manifest: %w", err)
	}
	ids := map[int]string{}
	names := map[string]bool{}
	for i := range m.Schemas {
		s := &m.Schemas[i]
		if s.Name == "" || s.Topic == "" || len(s.Versions) == 0 {
			return nil, fmt.Errorf("manifest schemas[%d]: name, topic and at least one version are required", i)
		}
		if names[s.Name] {
			return nil, fmt.Errorf("manifest schemas[%d]: duplicate name %q", i, s.Name)
		}
		names[s.Name] = true
		if !sort.SliceIsSorted(s.Versions, func(a, b int) bool { return s.Versions[a].Version < s.Versions[b].Version }) {
			return nil, fmt.Errorf("manifest %s: versions must be listed oldest first", s.Name)
		}
		for j := range s.Versions {
			v := &s.Versions[j]
			if other, dup := ids[v.ID]; dup || v.ID <= 0 {
				return nil, fmt.Errorf("manifest %s version %d: id %d is invalid or already used by %s", s.Name, v.Version, v.ID, other)
			}
			ids[v.ID] = s.Name
			text, err := files.ReadFile(v.File)
			if err != nil {
				return nil, fmt.Errorf("manifest %s version %d: %w", s.Name, v.Version, err)
			}
			v.Text = string(text)
		}
	}
	return m.Schemas, nil
}
