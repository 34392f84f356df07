package controlplane

import (
	"encoding"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/soulfra/calnet/api"
	"github.com/soulfra/calnet/internal/metrics"
	"github.com/soulfra/calnet/internal/snapshot"
	"github.com/soulfra/calnet/internal/strictjson"
	"github.com/soulfra/calnet/rules"
)

// TestOpenAPIDocumentIsStrictJSON: the served document has no duplicated
// key (SpawnRequest declared pids twice: Redocly, Spectral and
// openapi-typescript refuse such a document; encoding/json kept the last).
func TestOpenAPIDocumentIsStrictJSON(t *testing.T) {
	if err := strictjson.CheckStructure(OpenAPI); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
}

// wireSchemas pairs each schema of the OpenAPI document with the Go type
// the servers encode or decode for it. A schema that is not a Go type
// says so here with nil.
var wireSchemas = map[string]any{
	"Admin":                    api.Admin{},
	"SVIDVerdict":              api.SVIDVerdict{},
	"Approval":                 api.Approval{},
	"AuditPage":                api.AuditPage{},
	"AuditRecord":              api.AuditRecord{},
	"AuthzEntry":               api.AuthzEntry{},
	"Cal":                      api.Cal{},
	"Card":                     api.Card{},
	"Error":                    APIError{},
	"Event":                    api.Event{},
	"Healthz":                  nil, // a map built in handleHealthz
	"SnapshotManifest":         snapshot.Manifest{},
	"SnapshotRequest":          api.SnapshotRequest{},
	"Limits":                   SpawnLimits{},
	"LogPage":                  api.LogPage{},
	"Permission":               "", // a permission's name
	"PermissionMatrix":         api.PermissionMatrix{},
	"PermissionRecommendation": api.PermissionRecommendation{},
	"Point":                    metrics.Point{},
	"PoliciesDoc":              api.PoliciesDoc{},
	"PoliciesView":             api.PoliciesView{},
	"Policy":                   rules.Policy{},
	"Quota":                    api.Quota{},
	"Recommendation":           api.Recommendation{},
	"Recommendations":          api.Recommendations{},
	"Reflection":               api.Reflection{},
	"Revoked":                  api.Revoked{},
	"Rule":                     rules.Rule{},
	"RuleAction":               rules.Action{},
	"RuleDecision":             rules.Decision{},
	"RulePreview":              api.RulePreview{},
	"RulePreviewRequest":       api.RulePreviewRequest{},
	"RuleState":                rules.State{},
	"RulesDoc":                 api.RulesDoc{},
	"RulesView":                api.RulesView{},
	"SimQuality":               api.SimQuality{},
	"SimReport":                api.SimReport{},
	"Spawn":                    api.Spawn{},
	"SpawnRequest":             api.SpawnRequest{},
	"Status":                   api.Status{},
	"TemplateRecommendations":  api.TemplateRecommendations{},
	"Token":                    api.Token{},
	"Vote":                     api.Vote{},
	"VoteRequest":              voteRequest{},
	"WhoAmI":                   api.WhoAmI{},
}

// voteRequest is handleApprovalVote's body.
type voteRequest struct {
	Comment string `json:"comment"`
}

// notInDocument are the wire types of package api that the document
// describes inline or not at all, and why.
var notInDocument = map[string]string{
	"Tier": "inline in Cal.tiers", "Component": "inline in Cal.tiers", "TemplateInfo": "inline in /v1/templates",
	"LogEntry": "inline in LogPage", "TrafficPair": "inline in /v1/traffic", "Traffic": "inline in /v1/traffic",
	"MatrixRow": "inline in PermissionMatrix", "MatrixUpdate": "inline in PUT /v1/cals/{id}/matrix", "MatrixChange": "inline in PUT /v1/cals/{id}/matrix",
	"SimRuleStats": "inline in SimReport", "SimRequest": "inline in POST /v1/sim", "Health": "inline in /v1/cals/{id}/health",
	"TemplateOutcomes": "inline in TemplateRecommendations",
}

// requestBodies are the schemas only clients send: their required lists
// say what a request must carry, so a field the Go type always encodes
// may still be optional there.
var requestBodies = map[string]bool{"SpawnRequest": true, "SnapshotRequest": true, "VoteRequest": true, "RulePreviewRequest": true}

// TestOpenAPISchemasMatchWireTypes: the document and the Go wire types
// cannot drift apart. Every schema's properties are exactly the JSON
// fields of its Go type (names and kinds, through $refs and inline
// objects), its required properties are exactly the fields the Go type
// always encodes (outside requestBodies), and every wire type of package
// api has a schema or is listed in notInDocument. The TypeScript SDK's
// and the dashboard's types are generated from the document, so they
// hold too: a property is optional there only when the server may leave
// it out.
func TestOpenAPISchemasMatchWireTypes(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	schemas := doc.Components.Schemas
	var names []string
	for name := range schemas {
		names = append(names, name)
	}
	sort.Strings(names)
	c := &schemaCheck{schemas: schemas, seen: map[string]bool{}}
	for _, name := range names {
		v, ok := wireSchemas[name]
		if !ok {
			t.Errorf("schema %s: no Go type in wireSchemas (add the type the server encodes for it)", name)
			continue
		}
		if v == nil {
			continue
		}
		c.input = requestBodies[name]
		c.compare(schemas[name], reflect.TypeOf(v), name)
	}
	for name := range wireSchemas {
		if _, ok := schemas[name]; !ok {
			t.Errorf("wireSchemas names %s, which the document does not have", name)
		}
	}
	for _, e := range c.errs {
		t.Error(e)
	}
	for _, name := range apiTypes(t) {
		_, documented := schemas[name]
		if _, inline := notInDocument[name]; !documented && !inline {
			t.Errorf("api.%s has no schema in the OpenAPI document (add one, or list it in notInDocument)", name)
		}
	}
}

// apiTypes lists the exported struct types of package api.
func apiTypes(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "api", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.TYPE {
				continue
			}
			for _, s := range g.Specs {
				ts := s.(*ast.TypeSpec)
				if _, ok := ts.Type.(*ast.StructType); ok && ts.Name.IsExported() {
					out = append(out, ts.Name.Name)
				}
			}
		}
	}
	return out
}

type schemaCheck struct {
	schemas map[string]map[string]any
	seen    map[string]bool // ref and type pairs compared
	input   bool            // within a request body: required is what a client must send
	errs    []string
}

func (c *schemaCheck) errorf(path, format string, args ...any) {
	c.errs = append(c.errs, path+": "+fmt.Sprintf(format, args...))
}

var (
	timeType      = reflect.TypeFor[time.Time]()
	rawType       = reflect.TypeFor[json.RawMessage]()
	marshalerType = reflect.TypeFor[json.Marshaler]()
	textType      = reflect.TypeFor[encoding.TextMarshaler]()
)

// types is a schema's "type" as a list.
func types(s map[string]any) []string {
	switch v := s["type"].(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			out = append(out, fmt.Sprint(x))
		}
		return out
	}
	return nil
}

// compare checks schema s against Go type t at path.
func (c *schemaCheck) compare(s map[string]any, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		key := name + "|" + t.String()
		if c.seen[key] {
			return
		}
		c.seen[key] = true
		target, ok := c.schemas[name]
		if !ok {
			c.errorf(path, "$ref %s is not a schema of the document", ref)
			return
		}
		input := c.input
		c.input = input || requestBodies[name]
		c.compare(target, t, path+"("+name+")")
		c.input = input
		return
	}
	ty := types(s)
	want := func(kinds ...string) {
		for _, k := range kinds {
			if slices.Contains(ty, k) {
				return
			}
		}
		c.errorf(path, "schema type %v, but the Go type %s encodes as %v", ty, t, kinds)
	}
	switch {
	case t == timeType:
		want("string")
		return
	case t == rawType:
		return // any JSON
	case t.Implements(marshalerType) || reflect.PointerTo(t).Implements(marshalerType):
		return // encodes itself (durations as strings)
	case t.Kind() != reflect.Struct && (t.Implements(textType) || reflect.PointerTo(t).Implements(textType)):
		want("string")
		return
	}
	switch t.Kind() {
	case reflect.String:
		want("string")
	case reflect.Bool:
		want("boolean")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		want("integer")
	case reflect.Float32, reflect.Float64:
		want("number", "integer")
	case reflect.Slice, reflect.Array:
		want("array")
		if items, ok := s["items"].(map[string]any); ok {
			c.compare(items, t.Elem(), path+"[]")
		}
	case reflect.Map:
		want("object")
		if ap, ok := s["additionalProperties"].(map[string]any); ok {
			c.compare(ap, t.Elem(), path+"{}")
		}
	case reflect.Struct:
		want("object")
		props, _ := s["properties"].(map[string]any)
		fields := jsonFields(t)
		for name, f := range fields {
			ps, ok := props[name].(map[string]any)
			if !ok {
				c.errorf(path, "the Go type %s has field %q, the schema does not", t, name)
				continue
			}
			c.compare(ps, f.typ, path+"."+name)
		}
		for name := range props {
			if _, ok := fields[name]; !ok {
				c.errorf(path, "the schema has property %q, the Go type %s does not", name, t)
			}
		}
		req, _ := s["required"].([]any)
		required := map[string]bool{}
		for _, r := range req {
			required[fmt.Sprint(r)] = true
			f, ok := fields[fmt.Sprint(r)]
			if ok && f.omitted {
				c.errorf(path, "property %q is required, but the Go type %s omits it when empty", r, t)
			}
		}
		for name, f := range fields {
			if !f.omitted && !required[name] && !c.input {
				c.errorf(path, "property %q is not required, but the Go type %s always encodes it (list it in required)", name, t)
			}
		}
	}
}

type jsonField struct {
	typ     reflect.Type
	omitted bool // omitempty or omitzero: not always encoded
}

// jsonFields are a struct's JSON fields as encoding/json names them.
func jsonFields(t reflect.Type) map[string]jsonField {
	out := map[string]jsonField{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		omitted := strings.Contains(","+opts+",", ",omitempty,") || strings.Contains(","+opts+",", ",omitzero,")
		out[name] = jsonField{typ: f.Type, omitted: omitted}
	}
	return out
}

// TestSchemaCheckFindsDrift: the comparison refuses each kind of drift.
func TestSchemaCheckFindsDrift(t *testing.T) {
	type inner struct {
		N int `json:"n"`
	}
	type wire struct {
		A string    `json:"a"`
		B []inner   `json:"b,omitempty"`
		T time.Time `json:"t"`
	}
	good := `{"type":"object","required":["a","t"],"properties":{"a":{"type":"string"},"b":{"type":"array","items":{"$ref":"#/components/schemas/Inner"}},"t":{"type":"string","format":"date-time"}}}`
	inner1 := `{"type":"object","required":["n"],"properties":{"n":{"type":"integer"}}}`
	tests := []struct {
		name, schema, inner, want string
	}{
		{"matches", good, inner1, ""},
		{"missing property", strings.Replace(good, `"a":{"type":"string"},`, ``, 1), inner1, `has field "a"`},
		{"extra property", strings.Replace(good, `"a":{"type":"string"}`, `"a":{"type":"string"},"z":{"type":"string"}`, 1), inner1, `property "z"`},
		{"wrong kind", strings.Replace(good, `"a":{"type":"string"}`, `"a":{"type":"integer"}`, 1), inner1, `encodes as [string]`},
		{"required but omitted", strings.Replace(good, `["a","t"]`, `["a","b","t"]`, 1), inner1, `"b" is required`},
		{"always encoded but optional", strings.Replace(good, `["a","t"]`, `["t"]`, 1), inner1, `"a" is not required`},
		{"drift through a $ref", good, `{"type":"object","properties":{"m":{"type":"integer"}}}`, `has field "n"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			schemas := map[string]map[string]any{}
			for name, js := range map[string]string{"Wire": tt.schema, "Inner": tt.inner} {
				var m map[string]any
				if err := json.Unmarshal([]byte(js), &m); err != nil {
					t.Fatal(err)
				}
				schemas[name] = m
			}
			c := &schemaCheck{schemas: schemas, seen: map[string]bool{}}
			c.compare(schemas["Wire"], reflect.TypeFor[wire](), "Wire")
			got := strings.Join(c.errs, "\n")
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Fatalf("errors %q, want %q", got, tt.want)
			}
		})
	}
}
