package schemaregistry

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRegistry is an in-memory implementation of the subset of the Confluent Schema
// Registry REST API the client uses, following Confluent's documented behaviour:
//
//	POST /subjects/{s}/versions                      → {"id":N}; same schema again → same id;
//	                                                   a schema gets one global id across subjects
//	GET  /subjects                                   → ["s", …]
//	GET  /subjects/{s}/versions                      → [1,2,…] | 404 40401
//	GET  /subjects/{s}/versions/{v|latest}           → {"subject","version","id","schema"} | 40401 | 40402
//	GET  /schemas/ids/{id}                           → {"schema": "..."} | 404 40403
//	POST /compatibility/subjects/{s}/versions/latest → {"is_compatible":bool} | 404 40401
//	PUT  /config/{s}, GET /config[/{s}]              → {"compatibility"|"compatibilityLevel": "BACKWARD"}
//
// Errors use Confluent's body {"error_code":40401,"message":"..."}: 40401 subject not found,
// 40402 version not found, 40403 schema not found, 409 incompatible schema, 42201 invalid
// schema, 42203 invalid compatibility level, 401 unauthorized, 50001 store error.
// Compatibility (BACKWARD, the Confluent default) is checked with a small Avro rule for
// records: a new field needs a default, a kept field keeps its type.
type fakeRegistry struct {
	mu        sync.Mutex
	schemas   []string         // id-1 → schema
	byText    map[string]int   // schema → id
	subjects  map[string][]int // subject → ids, index = version-1
	compat    map[string]string
	user      string // basic auth required when set
	pass      string
	hits      map[string]int        // "METHOD route" → count
	failures  []injected            // served (and consumed) before real handling
	onRequest func(r *http.Request) // optional hook, set before use, called for every request
	contentTs map[string]int        // Content-Type of request bodies seen
	server    *httptest.Server
}

type injected struct {
	status int
	body   string // raw body; "" → none
	hang   bool   // block until the request's context ends
}

func newFakeRegistry(t *testing.T) *fakeRegistry {
	t.Helper()
	f := &fakeRegistry{

		byText:    map[string]int{},
		subjects:  map[string][]int{},
		compat:    map[string]string{},
		hits:      map[string]int{},
		contentTs: map[string]int{},
	}
	f.server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.server.Close)
	return f
}

func (f *fakeRegistry) URL() string { return f.server.URL }

func (f *fakeRegistry) requireAuth(user, pass string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.user, f.pass = user, pass
}

// inject queues responses served to the next requests, in order, before normal handling.
func (f *fakeRegistry) inject(rs ...injected) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = append(f.failures, rs...)
}

func (f *fakeRegistry) hitCount(route string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[route]
}

func (f *fakeRegistry) totalHits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, v := range f.hits {
		n += v
	}
	return n
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, map[string]any{"error_code": code, "message": msg})
}

// route classifies a request path into a route name used for hit counting.
func route(method, p string) string {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	switch {
	case len(parts) == 1 && parts[0] == "subjects":
		return method + " /subjects"
	case len(parts) == 3 && parts[0] == "subjects" && parts[2] == "versions":
		return method + " /subjects/{s}/versions"
	case len(parts) == 4 && parts[0] == "subjects" && parts[2] == "versions":
		return method + " /subjects/{s}/versions/{v}"
	case len(parts) == 3 && parts[0] == "schemas" && parts[1] == "ids":
		return method + " /schemas/ids/{id}"
	case len(parts) == 5 && parts[0] == "compatibility" && parts[1] == "subjects" && parts[3] == "versions":
		return method + " /compatibility/subjects/{s}/versions/{v}"
	case len(parts) == 1 && parts[0] == "config":
		return method + " /config"
	case len(parts) == 2 && parts[0] == "config":
		return method + " /config/{s}"
	}
	return method + " " + p
}

func (f *fakeRegistry) serve(w http.ResponseWriter, r *http.Request) {
	if f.onRequest != nil {
		f.onRequest(r)
	}
	// Use the escaped path so a subject containing "/" stays one segment.
	rawPath := r.URL.EscapedPath()
	rt := route(r.Method, rawPath)

	f.mu.Lock()
	f.hits[rt]++
	if r.ContentLength > 0 || r.Body != http.NoBody {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			f.contentTs[ct]++
		}
	}
	user, pass := f.user, f.pass
	var inj *injected
	if len(f.failures) > 0 {
		i := f.failures[0]
		f.failures = f.failures[1:]
		inj = &i
	}
	f.mu.Unlock()

	if user != "" {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="schema-registry"`)
			writeErr(w, http.StatusUnauthorized, 401, "Unauthorized")
			return
		}
	}
	if inj != nil {
		if inj.hang {
			// Read the body first: the server notices a closed connection (and cancels
			// the request context) only once the body has been consumed.
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
			return
		}
		w.WriteHeader(inj.status)
		_, _ = w.Write([]byte(inj.body))
		return
	}

	parts := strings.Split(strings.Trim(rawPath, "/"), "/")
	for i := range parts {
		parts[i] = unescape(parts[i])
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch rt {
	case "GET /subjects":
		names := make([]string, 0, len(f.subjects))
		for s := range f.subjects {
			names = append(names, s)
		}
		sort.Strings(names)
		writeJSON(w, 200, names)
	case "POST /subjects/{s}/versions":
		f.register(w, r, parts[1])
	case "GET /subjects/{s}/versions":
		ids, ok := f.subjects[parts[1]]
		if !ok {
			writeErr(w, 404, 40401, fmt.Sprintf("Subject '%s' not found.", parts[1]))
			return
		}
		vs := make([]int, len(ids))
		for i := range ids {
			vs[i] = i + 1
		}
		writeJSON(w, 200, vs)
	case "GET /subjects/{s}/versions/{v}":
		subject := parts[1]
		ids, ok := f.subjects[subject]
		if !ok {
			writeErr(w, 404, 40401, fmt.Sprintf("Subject '%s' not found.", subject))
			return
		}
		v, ok := parseVersion(parts[3], len(ids))
		if !ok {
			writeErr(w, 404, 40402, fmt.Sprintf("Version %s not found.", parts[3]))
			return
		}
		id := ids[v-1]
		writeJSON(w, 200, map[string]any{"subject": subject, "version": v, "id": id, "schema": f.schemas[id-1]})
	case "GET /schemas/ids/{id}":
		id, err := strconv.Atoi(parts[2])
		if err != nil || id < 1 || id > len(f.schemas) {
			writeErr(w, 404, 40403, "Schema "+parts[2]+" not found")
			return
		}
		writeJSON(w, 200, map[string]any{"schema": f.schemas[id-1]})
	case "POST /compatibility/subjects/{s}/versions/{v}":
		f.compatibility(w, r, parts[2], parts[4])
	case "PUT /config/{s}":
		var body struct {
			Compatibility string `json:"compatibility"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			writeErr(w, 422, 42203, "Invalid compatibility level")
			return
		}
		switch body.Compatibility {
		case "NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE":
		default:
			writeErr(w, 422, 42203, "Invalid compatibility level")
			return
		}
		f.compat[parts[1]] = body.Compatibility
		writeJSON(w, 200, map[string]string{"compatibility": body.Compatibility})
	case "GET /config":
		writeJSON(w, 200, map[string]string{"compatibilityLevel": "BACKWARD"})
	case "GET /config/{s}":
		writeJSON(w, 200, map[string]string{"compatibilityLevel": f.level(parts[1])})
	default:
		writeErr(w, 404, 404, "HTTP 404 Not Found")
	}
}

func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

func parseVersion(v string, n int) (int, bool) {
	if v == "latest" || v == "-1" {
		return n, n > 0
	}
	i, err := strconv.Atoi(v)
	if err != nil || i < 1 || i > n {
		return 0, false
	}
	return i, true
}

func (f *fakeRegistry) level(subject string) string {
	if l, ok := f.compat[subject]; ok {
		return l
	}
	return "BACKWARD"
}

type schemaBody struct {
	Schema     string `json:"schema"`
	SchemaType string `json:"schemaType"`
}

func decodeSchemaBody(w http.ResponseWriter, r *http.Request) (schemaBody, bool) {
	var b schemaBody
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		writeErr(w, 422, 422, "Unrecognized field or malformed request: "+err.Error())
		return b, false
	}
	if b.SchemaType != "" && b.SchemaType != "AVRO" {
		writeErr(w, 422, 42201, "Invalid schema type "+b.SchemaType)
		return b, false
	}
	var v any
	if b.Schema == "" || json.Unmarshal([]byte(b.Schema), &v) != nil {
		writeErr(w, 422, 42201, "Invalid schema "+b.Schema)
		return b, false
	}
	return b, true
}

func (f *fakeRegistry) register(w http.ResponseWriter, r *http.Request, subject string) {
	b, ok := decodeSchemaBody(w, r)
	if !ok {
		return
	}
	ids := f.subjects[subject]
	if id, ok := f.byText[b.Schema]; ok {
		for _, existing := range ids {
			if existing == id {
				writeJSON(w, 200, map[string]int{"id": id}) // idempotent
				return
			}
		}
	}
	if len(ids) > 0 && f.level(subject) != "NONE" {
		latest := f.schemas[ids[len(ids)-1]-1]
		if !backwardCompatible(latest, b.Schema) {
			writeErr(w, 409, 409, "Schema being registered is incompatible with an earlier schema for subject \""+subject+"\"")
			return
		}
	}
	id, ok := f.byText[b.Schema]
	if !ok {
		f.schemas = append(f.schemas, b.Schema)
		id = len(f.schemas)
		f.byText[b.Schema] = id
	}
	f.subjects[subject] = append(ids, id)
	writeJSON(w, 200, map[string]int{"id": id})
}

func (f *fakeRegistry) compatibility(w http.ResponseWriter, r *http.Request, subject, version string) {
	b, ok := decodeSchemaBody(w, r)
	if !ok {
		return
	}
	ids, ok := f.subjects[subject]
	if !ok {
		writeErr(w, 404, 40401, fmt.Sprintf("Subject '%s' not found.", subject))
		return
	}
	v, ok := parseVersion(version, len(ids))
	if !ok {
		writeErr(w, 404, 40402, "Version "+version+" not found.")
		return
	}
	ok = f.level(subject) == "NONE" || backwardCompatible(f.schemas[ids[v-1]-1], b.Schema)
	writeJSON(w, 200, map[string]bool{"is_compatible": ok})
}

// backwardCompatible reports whether data written with oldSchema can be read with
// newSchema, for the flat Avro records the tests use: every field of the new record either
// exists in the old one with the same type or has a default. Non-record schemas must be equal.
func backwardCompatible(oldSchema, newSchema string) bool {
	type field struct {
		Name    string          `json:"name"`
		Type    json.RawMessage `json:"type"`
		Default json.RawMessage `json:"default"`
	}
	type record struct {
		Type   string  `json:"type"`
		Name   string  `json:"name"`
		Fields []field `json:"fields"`
	}
	var o, n record
	if json.Unmarshal([]byte(oldSchema), &o) != nil || json.Unmarshal([]byte(newSchema), &n) != nil ||
		o.Type != "record" || n.Type != "record" {
		return oldSchema == newSchema
	}
	if o.Name != n.Name {
		return false
	}
	old := map[string]field{}
	for _, f := range o.Fields {
		old[f.Name] = f
	}
	for _, nf := range n.Fields {
		of, ok := old[nf.Name]
		if !ok {
			if nf.Default == nil {
				return false
			}
			continue
		}
		if !jsonEqual(of.Type, nf.Type) {
			return false
		}
	}
	return true
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xs, _ := json.Marshal(x)
	ys, _ := json.Marshal(y)
	return string(xs) == string(ys)
}
