// Package codec turns the pipeline's events into Kafka record values and back, in the Schema
// Registry wire format every Avro consumer in the Kafka ecosystem reads: one magic byte 0, the
// 4-byte big-endian schema ID, then the Avro binary encoding.
//
// Schema IDs come from a Registry: the embedded one (IDs from schemas/manifest.json, no server)
// or a Confluent-compatible Schema Registry over HTTP. Records written with an older,
// backward-compatible version of a schema decode too: the codec fetches the writer's schema by
// ID and maps its fields by name.
package codec

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/linkedin/goavro/v2"

	"github.com/loyalty-scoring/loyalty/pkg/event"
	"github.com/loyalty-scoring/loyalty/pkg/schemaregistry"
	"github.com/loyalty-scoring/loyalty/schemas"
)

// Registry maps schemas to Schema Registry IDs and back.
type Registry interface {
	// Register returns the ID of schema under subject, registering it if the registry can.
	Register(ctx context.Context, subject, schema string) (int, error)
	// SchemaByID returns the schema text with that ID.
	SchemaByID(ctx context.Context, id int) (string, error)
}

// Errors returned by Decode, matched with errors.Is. Each maps to a dead-letter code (Code).
var (
	// ErrNotFramed: the value is shorter than the 5-byte header or its magic byte is not 0.
	ErrNotFramed = errors.New("not in Schema Registry wire format")
	// ErrUnknownSchema: the schema ID is unknown to the registry, or names a schema this
	// pipeline has no contract for.
	ErrUnknownSchema = errors.New("unknown schema")
	// ErrMalformed: the Avro body does not decode with the writer's schema, has trailing
	// bytes, or holds values outside the contract (an unknown enum symbol, say).
	ErrMalformed = errors.New("malformed Avro body")
)

// Code is the short dead-letter reason code for a decoding error.
func Code(err error) string {
	switch {
	case errors.Is(err, ErrNotFramed):
		return "not_framed"
	case errors.Is(err, ErrUnknownSchema):
		return "unknown_schema"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, event.ErrInvalid):
		return "invalid"
	default:
		return "undecodable"
	}
}

const headerLen = 5

type writerSchema struct {
	name  string
	id    int
	avro  *goavro.Codec
	toMap func(event.Event) (map[string]any, error)
	// direct, when set, encodes without goavro (direct.go); enums are its enum ordinals.
	direct directEncoder
	enums  enumIndex
}

type readerSchema struct {
	name    string
	avro    *goavro.Codec
	fromMap func(map[string]any) (event.Event, error)
	// direct, when set, decodes without goavro what it can (directdecode.go).
	direct directDecoder
	enums  enumSymbols
}

// Codec encodes and decodes events. It is safe for concurrent use.
type Codec struct {
	registry Registry
	writers  map[string]*writerSchema // by schema name
	mu       sync.RWMutex
	readers  map[int]*readerSchema // by schema ID, filled lazily for older versions
	unknown  map[int]error         // IDs known to be foreign or missing
}

// MaxArrayBlockItems bounds the items an Avro array (or map) block of a record may declare.
// goavro allocates a block's declared item count before it reads the items, so a 50-byte
// poison record declaring 40 million items made it allocate 639 MB (found by FuzzDecode): a
// few of them in one batch would get a consumer OOM-killed, and the record, redelivered,
// would do it again. Our arrays hold a handful of items; a record of 1 MiB could not hold
// more than this many of even the smallest.
const MaxArrayBlockItems = 1 << 16

func init() {
	// goavro's bound is package-wide; every decoder of this process decodes our records.
	goavro.MaxBlockCount = MaxArrayBlockItems
}

// New registers the latest version of every schema in the manifest with the registry and
// returns a Codec that writes with them. With an HTTP registry this is the "register on
// start" step; IDs are cached for the Codec's lifetime.
func New(ctx context.Context, registry Registry) (*Codec, error) {
	all, err := schemas.All()
	if err != nil {
		return nil, fmt.Errorf("loading schemas: %w", err)
	}
	c := &Codec{
		registry: registry,
		writers:  make(map[string]*writerSchema, len(all)),
		readers:  make(map[int]*readerSchema, len(all)),
		unknown:  map[int]error{},
	}
	for _, s := range all {
		conv, ok := converters[s.Name]
		if !ok {
			return nil, fmt.Errorf("schema %s has no Go converter", s.Name)
		}
		latest := s.Latest()
		avro, err := goavro.NewCodec(latest.Text)
		if err != nil {
			return nil, fmt.Errorf("parsing schema %s v%d: %w", s.Name, latest.Version, err)
		}
		id, err := registry.Register(ctx, s.Subject(), latest.Text)
		if err != nil {
			return nil, fmt.Errorf("registering schema %s: %w", s.Name, err)
		}
		w := &writerSchema{name: s.Name, id: id, avro: avro, toMap: conv.toMap}
		w.direct, w.enums = agreeingDirect(w, latest.Text)
		c.writers[s.Name] = w
		r := &readerSchema{name: s.Name, avro: avro, fromMap: conv.fromMap}
		r.direct, r.enums = agreeingDecoder(r, latest.Text, conv.toMap)
		c.readers[id] = r
	}
	return c, nil
}

// agreeingDirect returns the schema's direct encoder and enum ordinals when it has one that
// encodes a sample exactly as goavro does, and nil otherwise (goavro is used).
func agreeingDirect(w *writerSchema, schema string) (directEncoder, enumIndex) {
	direct, ok := directEncoders[w.name]
	if !ok {
		return nil, nil
	}
	enums, err := enumsOf(schema)
	if err != nil {
		return nil, nil
	}
	sample := directSample(w.name)
	native, err := w.toMap(sample)
	if err != nil {
		return nil, nil
	}
	want, err := w.avro.BinaryFromNative(nil, native)
	if err != nil {
		return nil, nil
	}
	if got, err := direct(nil, sample, enums); err != nil || string(got) != string(want) {
		return nil, nil
	}
	return direct, enums
}

// SchemaID returns the registry ID the codec writes the named schema with.
func (c *Codec) SchemaID(name string) (int, bool) {
	w, ok := c.writers[name]
	if !ok {
		return 0, false
	}
	return w.id, true
}

// Encode returns the framed Avro encoding of e.
func (c *Codec) Encode(e event.Event) ([]byte, error) {
	w, ok := c.writers[e.Schema()]
	if !ok {
		return nil, fmt.Errorf("encoding %s: %w", e.Schema(), ErrUnknownSchema)
	}
	buf := make([]byte, headerLen, 256)
	binary.BigEndian.PutUint32(buf[1:], uint32(w.id))
	if w.direct != nil {
		buf, err := w.direct(buf, e, w.enums)
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", w.name, err)
		}
		return buf, nil
	}
	native, err := w.toMap(e)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", w.name, err)
	}
	buf, err = w.avro.BinaryFromNative(buf, native)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", w.name, err)
	}
	return buf, nil
}

// Decode parses a framed value into one of the event types of package event (a value, not a
// pointer: event.Purchase, event.TierChanged, ...). Errors wrap ErrNotFramed,
// ErrUnknownSchema or ErrMalformed.
func (c *Codec) Decode(ctx context.Context, value []byte) (event.Event, error) {
	if len(value) < headerLen || value[0] != 0 {
		return nil, fmt.Errorf("decoding %d bytes: %w", len(value), ErrNotFramed)
	}
	id := int(binary.BigEndian.Uint32(value[1:headerLen]))
	r, err := c.reader(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.direct != nil {
		if e, ok := r.direct(value[headerLen:], r.enums); ok {
			return e, nil
		}
	}
	e, err := r.goavroDecode(value[headerLen:])
	if err != nil {
		return nil, fmt.Errorf("decoding %s (schema %d): %w: %w", r.name, id, ErrMalformed, err)
	}
	return e, nil
}

// goavroDecode decodes an Avro body (no header) with goavro and the schema's converter.
func (r *readerSchema) goavroDecode(body []byte) (event.Event, error) {
	native, rest, err := r.avro.NativeFromBinary(body)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(rest))
	}
	m, ok := native.(map[string]any)
	if !ok {
		return nil, errors.New("not a record")
	}
	return r.fromMap(m)
}

// reader finds the schema a record was written with: one of ours by ID, or an older version
// fetched from the registry and matched to our contracts by its full name.
func (c *Codec) reader(ctx context.Context, id int) (*readerSchema, error) {
	c.mu.RLock()
	r, ok := c.readers[id]
	bad := c.unknown[id]
	c.mu.RUnlock()
	if ok {
		return r, nil
	}
	if bad != nil {
		return nil, bad
	}
	text, err := c.registry.SchemaByID(ctx, id)
	if errors.Is(err, schemaregistry.ErrNotFound) {
		return nil, c.remember(id, fmt.Errorf("schema id %d: %w: %w", id, ErrUnknownSchema, err))
	}
	if err != nil {
		// The registry is unreachable or failing: a transient error the caller retries,
		// never a reason to dead-letter a record.
		return nil, fmt.Errorf("looking up schema %d: %w", id, err)
	}
	avro, err := goavro.NewCodec(text)
	if err != nil {
		return nil, c.remember(id, fmt.Errorf("schema id %d: %w: %w", id, ErrUnknownSchema, err))
	}
	name := shortName(avro.Schema())
	conv, ok := converters[name]
	if !ok {
		return nil, c.remember(id, fmt.Errorf("schema id %d (%s): %w", id, name, ErrUnknownSchema))
	}
	r = &readerSchema{name: name, avro: avro, fromMap: conv.fromMap}
	c.mu.Lock()
	c.readers[id] = r
	c.mu.Unlock()
	return r, nil
}

// remember caches a permanent lookup failure, so a stream of foreign records does not hit
// the registry once per record. Transient failures (a cancelled context) are not cached.
func (c *Codec) remember(id int, err error) error {
	c.mu.Lock()
	if len(c.unknown) < 1024 {
		c.unknown[id] = err
	}
	c.mu.Unlock()
	return err
}
