// Package avrocompat decides whether one Avro schema can read data written with another,
// following the schema-resolution rules of the Avro specification. It is the check behind
// "every new version of a contract stays backward compatible": a consumer that upgrades to
// the new schema must still read every record already on the topic.
package avrocompat

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrIncompatible is matched by errors.Is when the reader cannot read the writer's data.
var ErrIncompatible = errors.New("incompatible schemas")

// CheckBackward returns nil when data written with oldSchema can be read with newSchema, and
// otherwise an error naming the first offending path (e.g. "Purchase.channel: ...").
func CheckBackward(newSchema, oldSchema string) error {
	reader, err := parse(newSchema)
	if err != nil {
		return fmt.Errorf("parsing new schema: %w", err)
	}
	writer, err := parse(oldSchema)
	if err != nil {
		return fmt.Errorf("parsing old schema: %w", err)
	}
	c := checker{seen: map[[2]string]bool{}}
	if msg := c.check(reader, writer, ""); msg != "" {
		return fmt.Errorf("%w: %s", ErrIncompatible, msg)
	}
	return nil
}

// CheckBackwardTransitive checks the newest schema against every earlier one (oldest first).
func CheckBackwardTransitive(versions []string) error {
	if len(versions) < 2 {
		return nil
	}
	newest := versions[len(versions)-1]
	for i, old := range versions[:len(versions)-1] {
		if err := CheckBackward(newest, old); err != nil {
			return fmt.Errorf("against version %d: %w", i+1, err)
		}
	}
	return nil
}

// node is a parsed schema with named types resolved.
type node struct {
	kind    string // null boolean int long float double bytes string record enum array map fixed union
	name    string // full name of a named type
	aliases []string
	fields  []field
	symbols []string
	hasDef  bool // enum default
	size    int
	items   *node // array items, map values
	branch  []*node
}

type field struct {
	name    string
	aliases []string
	typ     *node
	hasDef  bool
}

type parser struct {
	named map[string]*node
}

func parse(text string) (*node, error) {
	var raw any
	if err := json.Unmarshal([]byte(text), &raw); err != nil {
		return nil, err
	}
	p := parser{named: map[string]*node{}}
	return p.node(raw, "")
}

func fullName(name, namespace string) string {
	if strings.Contains(name, ".") || namespace == "" {
		return name
	}
	return namespace + "." + name
}

func (p *parser) node(raw any, ns string) (*node, error) {
	switch v := raw.(type) {
	case string:
		switch v {
		case "null", "boolean", "int", "long", "float", "double", "bytes", "string":
			return &node{kind: v}, nil
		}
		if n, ok := p.named[fullName(v, ns)]; ok {
			return n, nil
		}
		if n, ok := p.named[v]; ok {
			return n, nil
		}
		return nil, fmt.Errorf("unknown type %q", v)
	case []any:
		u := &node{kind: "union"}
		for _, b := range v {
			n, err := p.node(b, ns)
			if err != nil {
				return nil, err
			}
			u.branch = append(u.branch, n)
		}
		return u, nil
	case map[string]any:
		return p.complex(v, ns)
	}
	return nil, fmt.Errorf("unexpected schema element %T", raw)
}

func strs(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, s := range list {
		if str, ok := s.(string); ok {
			out = append(out, str)
		}
	}
	return out
}

func (p *parser) complex(m map[string]any, ns string) (*node, error) {
	kind, _ := m["type"].(string)
	if _, nested := m["type"].(string); !nested {
		return p.node(m["type"], ns) // {"type": {...}} or {"type": [...]}
	}
	switch kind {
	case "record", "error", "enum", "fixed":
		name, _ := m["name"].(string)
		if n, ok := m["namespace"].(string); ok && !strings.Contains(name, ".") {
			ns = n
		} else if i := strings.LastIndex(name, "."); i >= 0 {
			ns = name[:i]
		}
		n := &node{kind: kind, name: fullName(name, ns)}
		if kind == "error" {
			n.kind = "record"
		}
		for _, a := range strs(m["aliases"]) {
			n.aliases = append(n.aliases, fullName(a, ns))
		}
		p.named[n.name] = n
		switch n.kind {
		case "enum":
			n.symbols = strs(m["symbols"])
			_, n.hasDef = m["default"]
		case "fixed":
			size, _ := m["size"].(float64)
			n.size = int(size)
		case "record":
			fields, _ := m["fields"].([]any)
			for _, f := range fields {
				fm, _ := f.(map[string]any)
				fname, _ := fm["name"].(string)
				t, err := p.node(fm["type"], ns)
				if err != nil {
					return nil, fmt.Errorf("field %s: %w", fname, err)
				}
				_, hasDef := fm["default"]
				n.fields = append(n.fields, field{name: fname, aliases: strs(fm["aliases"]), typ: t, hasDef: hasDef})
			}
		}
		return n, nil
	case "array":
		items, err := p.node(m["items"], ns)
		return &node{kind: "array", items: items}, err
	case "map":
		values, err := p.node(m["values"], ns)
		return &node{kind: "map", items: values}, err
	default:
		// a primitive written as {"type": "long", "logicalType": ...}
		return p.node(kind, ns)
	}
}

type checker struct {
	seen map[[2]string]bool // record pairs already being checked (recursive types)
}

var promotions = map[string][]string{
	"int":    {"long", "float", "double"},
	"long":   {"float", "double"},
	"float":  {"double"},
	"string": {"bytes"},
	"bytes":  {"string"},
}

func shortOf(name string) string { return name[strings.LastIndex(name, ".")+1:] }

func namesMatch(reader, writer *node) bool {
	if reader.name == writer.name || shortOf(reader.name) == shortOf(writer.name) {
		return true
	}
	return slices.Contains(reader.aliases, writer.name)
}

// check returns "" when reader can read writer's data, else a description of the problem.
func (c *checker) check(reader, writer *node, path string) string {
	if writer.kind == "union" {
		for _, wb := range writer.branch {
			if msg := c.check(reader, wb, path); msg != "" {
				return msg
			}
		}
		return ""
	}
	if reader.kind == "union" {
		for _, rb := range reader.branch {
			if c.check(rb, writer, path) == "" {
				return ""
			}
		}
		return fmt.Sprintf("%s: no branch of the new union reads the old type %s", pathOr(path), describe(writer))
	}
	if reader.kind != writer.kind {
		if slices.Contains(promotions[writer.kind], reader.kind) {
			return ""
		}
		return fmt.Sprintf("%s: type changed from %s to %s", pathOr(path), describe(writer), describe(reader))
	}
	switch reader.kind {
	case "record":
		if !namesMatch(reader, writer) {
			return fmt.Sprintf("%s: record renamed from %s to %s without an alias", pathOr(path), writer.name, reader.name)
		}
		key := [2]string{reader.name, writer.name}
		if c.seen[key] {
			return ""
		}
		c.seen[key] = true
		return c.record(reader, writer, join(path, shortOf(reader.name)))
	case "enum":
		if !namesMatch(reader, writer) {
			return fmt.Sprintf("%s: enum renamed from %s to %s without an alias", pathOr(path), writer.name, reader.name)
		}
		if reader.hasDef {
			return ""
		}
		for _, s := range writer.symbols {
			if !slices.Contains(reader.symbols, s) {
				return fmt.Sprintf("%s: enum symbol %s was removed and the enum has no default", pathOr(path), s)
			}
		}
	case "fixed":
		if !namesMatch(reader, writer) || reader.size != writer.size {
			return fmt.Sprintf("%s: fixed %s(%d) cannot read %s(%d)", pathOr(path), reader.name, reader.size, writer.name, writer.size)
		}
	case "array", "map":
		return c.check(reader.items, writer.items, path+"[]")
	}
	return ""
}

func (c *checker) record(reader, writer *node, path string) string {
	for _, rf := range reader.fields {
		wf, ok := findField(writer, rf)
		if !ok {
			if !rf.hasDef {
				return fmt.Sprintf("%s: new field %s has no default, so old records cannot be read", path, rf.name)
			}
			continue
		}
		if msg := c.check(rf.typ, wf.typ, join(path, rf.name)); msg != "" {
			return msg
		}
	}
	return ""
}

func findField(writer *node, rf field) (field, bool) {
	for _, wf := range writer.fields {
		if wf.name == rf.name || slices.Contains(rf.aliases, wf.name) {
			return wf, true
		}
	}
	return field{}, false
}

func describe(n *node) string {
	if n.name != "" {
		return n.kind + " " + n.name
	}
	return n.kind
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func pathOr(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}
