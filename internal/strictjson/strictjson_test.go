package strictjson

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

type doc struct {
	A     int                       `json:"a"`
	B     []map[string]int          `json:"b"`
	C     map[string]map[string]int `json:"c"`
	D     *inner                    `json:"d,omitempty"`
	E     []inner                   `json:"e"`
	R     json.RawMessage           `json:"r"`
	U     selfDecoding              `json:"u"`
	X     any                       `json:"x"`
	Plain string
	skip  int // unexported: never decoded
	Dash  int `json:"-"`
}

type inner struct {
	Permissions []string `json:"permissions"`
	Serial      int      `json:"serial"`
}

// selfDecoding decodes itself (strictly, as every UnmarshalJSON must).
type selfDecoding struct {
	V int `json:"v"`
}

func (s *selfDecoding) UnmarshalJSON(b []byte) error {
	var j struct {
		V int `json:"v"`
	}
	if err := Unmarshal(b, 1<<10, &j); err != nil {
		return err
	}
	s.V = j.V
	return nil
}

type Base struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type embedding struct {
	Base
	Name  string `json:"name"` // shadows Base.Name
	Extra int    `json:"extra"`
}

func TestUnmarshal(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"ok", `{"a":1,"b":[{"x":1},{"x":2}]}`, ""},
		{"duplicate top", `{"a":1,"a":2}`, `duplicated field "a" at $`},
		{"duplicate nested", `{"b":[{"x":1,"x":2}]}`, `duplicated field "x" at $.b[0]`},
		{"nested objects then keys", `{"b":[{"x":1},{"y":2,"z":3}],"a":1}`, ""},
		{"duplicate after nested", `{"b":[{"x":1}],"a":1,"a":2}`, `duplicated field "a" at $`},
		{"object in object", `{"c":{"p":{"x":1},"q":{"x":1}},"a":1}`, ""},
		{"dup in object in object", `{"c":{"p":{"x":1},"p":{"x":1}}}`, `duplicated field "p" at $.c`},
		{"map keys are exact, not folded", `{"c":{"p":{"x":1},"P":{"x":1}}}`, ""},
		{"unknown", `{"zz":1}`, `unknown field "zz" at $`},
		{"case variant of a field", `{"A":1}`, `unknown field "A" at $ (field names are case-sensitive: "a")`},
		{"case variant beside the field", `{"a":1,"A":2}`, `unknown field "A" at $`},
		{"case variant in a struct in a slice", `{"e":[{"permissions":["read"]},{"Permissions":["admin"]}]}`, `unknown field "Permissions" at $.e[1]`},
		{"upper-case variant", `{"d":{"SERIAL":3}}`, `unknown field "SERIAL" at $.d`},
		{"escaped case variant", `{"\u0041":1}`, `unknown field "A" at $`},
		{"escaped duplicate", `{"a":1,"\u0061":2}`, `duplicated field "a" at $`},
		{"kelvin sign folds to k in encoding/json", `{"d":{"permissions":[],"serial":1,"\u212aey":1}}`, `unknown field "Key"`},
		{"long s folds to s in encoding/json", "{\"d\":{\"ſerial\":1}}", `unknown field "ſerial"`},
		{"invalid UTF-8 keys that decode alike", "{\"c\":{\"\xff\":{},\"\xfe\":{}}}", "duplicated field \"\ufffd\""},
		{"untagged field by its Go name", `{"Plain":"p"}`, ""},
		{"untagged field folded", `{"plain":"p"}`, `unknown field "plain"`},
		{"dash field", `{"Dash":1}`, `unknown field "Dash"`},
		{"unexported field", `{"skip":1}`, `unknown field "skip"`},
		{"raw message is any JSON", `{"r":{"Whatever":[1,{"k":2}]}}`, ""},
		{"raw message still without duplicates", `{"r":{"k":1,"k":2}}`, `duplicated field "k" at $.r`},
		{"unmarshaler decodes strictly", `{"u":{"v":1}}`, ""},
		{"unmarshaler rejects a case variant", `{"u":{"V":1}}`, `unknown field "V"`},
		{"any holds any keys", `{"x":{"A":1,"a":2}}`, ""},
		{"trailing document", `{"a":1} {}`, "data after"},
		{"trailing garbage", `{"a":1} x`, "data after"},
		{"trailing whitespace", "{\"a\":1} \n\t", ""},
		{"empty", ``, "empty document"},
		{"truncated", `{"a":1`, "invalid JSON"},
		{"truncated in array", `{"b":[{"x":1}`, "invalid JSON"},
		{"wrong type", `{"a":"1"}`, "invalid JSON"},
		{"too big", `{"a":1}` + strings.Repeat(" ", 200), "over the size limit of 128"},
		{"too deep", `{"b":[` + strings.Repeat("[", 20) + strings.Repeat("]", 20) + `]}`, "nesting deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d doc
			err := Unmarshal([]byte(tt.in), 128, &d)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if d.skip != 0 {
					t.Fatal("an unexported field was filled")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestEmbeddedFields(t *testing.T) {
	tests := []struct {
		in, wantErr string
	}{
		{`{"id":"1","name":"n","extra":2}`, ""},
		{`{"ID":"1"}`, `unknown field "ID"`},
		{`{"Base":{"id":"1"}}`, `unknown field "Base"`},
	}
	for _, tt := range tests {
		var e embedding
		err := Unmarshal([]byte(tt.in), 1<<10, &e)
		if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: error = %v, want %q", tt.in, err, tt.wantErr)
		}
	}
	var e embedding
	if err := Unmarshal([]byte(`{"id":"1","name":"outer"}`), 1<<10, &e); err != nil || e.Name != "outer" || e.ID != "1" {
		t.Fatalf("decoded %+v, %v", e, err)
	}
}

func TestDecode(t *testing.T) {
	var d doc
	if err := Decode(strings.NewReader(`{"a":1}`), 64, &d); err != nil || d.A != 1 {
		t.Fatalf("Decode = %v, %+v", err, d)
	}
	if err := Decode(strings.NewReader(`{"a":1}`+strings.Repeat(" ", 64)), 64, &d); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Decode of an oversized body = %v, want ErrTooLarge", err)
	}
	if err := Decode(strings.NewReader(`{"a":1} {"a":2}`), 64, &d); err == nil || !strings.Contains(err.Error(), "data after") {
		t.Fatalf("Decode of two documents = %v", err)
	}
}

// FuzzUnmarshal: whatever the bytes, Unmarshal returns (no panic, no
// hang), and what it accepts encoding/json accepts too, with the same
// result, and re-encodes to a document it accepts again.
func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte(`{"a":{"b":[1,2,{"c":null}]}}`))
	f.Add([]byte(`{"a":1,"a":1}`))
	f.Add([]byte(`{"a":1,"b":[{"x":1}],"e":[{"permissions":["read"],"serial":2}],"d":{"serial":1}}`))
	f.Add([]byte(`{"A":1}`))
	f.Add([]byte(`{"r":{"k":[1,2]},"u":{"v":3},"x":[true,null]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = CheckStructure(data)
		var v any
		_ = Unmarshal(data, 1<<16, &v)
		var d doc
		if Unmarshal(data, 1<<16, &d) != nil {
			return
		}
		var std doc
		if err := json.Unmarshal(data, &std); err != nil {
			t.Fatalf("strictjson accepted what encoding/json refuses: %v", err)
		}
		out, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var again doc
		if err := Unmarshal(out, 1<<20, &again); err != nil {
			t.Fatalf("re-encoded document refused: %v\n%s", err, out)
		}
	})
}
