package strictjson

import (
	"strings"
	"testing"
)

type doc struct {
	A int                       `json:"a"`
	B []map[string]int          `json:"b"`
	C map[string]map[string]int `json:"c"`
}

func TestUnmarshal(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"ok", `{"a":1,"b":[{"x":1},{"x":2}]}`, ""},
		{"duplicate top", `{"a":1,"a":2}`, `duplicated field "a" at $`},
		{"duplicate nested", `{"b":[{"x":1,"x":2}]}`, `duplicated field "x" at $.b`},
		{"nested objects then keys", `{"b":[{"x":1},{"y":2,"z":3}],"a":1}`, ""},
		{"duplicate after nested", `{"b":[{"x":1}],"a":1,"a":2}`, `duplicated field "a" at $`},
		{"object in object", `{"c":{"p":{"x":1},"q":{"x":1}},"a":1}`, ""},
		{"dup in object in object", `{"c":{"p":{"x":1},"p":{"x":1}}}`, `duplicated field "p" at $.c`},
		{"unknown", `{"d":1}`, "unknown field"},
		{"trailing", `{"a":1} {}`, "data after"},
		{"truncated", `{"a":1`, "invalid JSON"},
		{"too big", `{"a":1}` + strings.Repeat(" ", 100), "over the limit of 64"},
		{"too deep", `{"b":[` + strings.Repeat("[", 20) + strings.Repeat("]", 20) + `]}`, "nesting deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d doc
			err := Unmarshal([]byte(tt.in), 64, &d)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func FuzzCheckStructure(f *testing.F) {
	f.Add([]byte(`{"a":{"b":[1,2,{"c":null}]}}`))
	f.Add([]byte(`{"a":1,"a":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = CheckStructure(data)
		var v any
		_ = Unmarshal(data, 1<<16, &v)
	})
}
