package codec

import (
	"context"
	"fmt"

	"github.com/linkedin/goavro/v2"

	"github.com/loyalty-scoring/loyalty/pkg/schemaregistry"
	"github.com/loyalty-scoring/loyalty/schemas"
)

// EmbeddedRegistry serves the schema IDs committed in schemas/manifest.json. It needs no
// server, and it cannot register a schema that is not in the manifest: a new version is added
// to the manifest (with the next free ID) in the same change that adds the schema file.
type EmbeddedRegistry struct {
	ids     map[string]int // subject + "\x00" + canonical schema → id
	schemas map[int]string
}

// NewEmbeddedRegistry loads the manifest.
func NewEmbeddedRegistry() (*EmbeddedRegistry, error) {
	all, err := schemas.All()
	if err != nil {
		return nil, fmt.Errorf("loading schemas: %w", err)
	}
	r := &EmbeddedRegistry{ids: map[string]int{}, schemas: map[int]string{}}
	for _, s := range all {
		for _, v := range s.Versions {
			canonical, err := canonicalForm(v.Text)
			if err != nil {
				return nil, fmt.Errorf("schema %s v%d: %w", s.Name, v.Version, err)
			}
			r.ids[s.Subject()+"\x00"+canonical] = v.ID
			r.schemas[v.ID] = v.Text
		}
	}
	return r, nil
}

// Register returns the manifest ID of schema under subject.
func (r *EmbeddedRegistry) Register(_ context.Context, subject, schema string) (int, error) {
	canonical, err := canonicalForm(schema)
	if err != nil {
		return 0, err
	}
	id, ok := r.ids[subject+"\x00"+canonical]
	if !ok {
		return 0, fmt.Errorf("subject %s: schema is not in schemas/manifest.json: %w", subject, schemaregistry.ErrNotFound)
	}
	return id, nil
}

// SchemaByID returns the schema text with that manifest ID.
func (r *EmbeddedRegistry) SchemaByID(_ context.Context, id int) (string, error) {
	s, ok := r.schemas[id]
	if !ok {
		return "", fmt.Errorf("schema id %d is not in schemas/manifest.json: %w", id, schemaregistry.ErrNotFound)
	}
	return s, nil
}

// canonicalForm is the Avro Parsing Canonical Form, so white space and doc changes do not
// make two texts of one schema look different.
func canonicalForm(schema string) (string, error) {
	c, err := goavro.NewCodec(schema)
	if err != nil {
		return "", fmt.Errorf("parsing schema: %w", err)
	}
	return c.CanonicalSchema(), nil
}
