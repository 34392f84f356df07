package controlplane

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestReadJSONIsStrict: an operator API body is one document whose keys
// are exactly the documented ones. Before strictjson routed it, trailing
// data ({"reason":"x"} {"reason":"y"} revoked), duplicated keys (the last
// won) and case variants ("Reason" filled reason) were accepted.
func TestReadJSONIsStrict(t *testing.T) {
	type body struct {
		Reason      string   `json:"reason"`
		Permissions []string `json:"permissions"`
	}
	tests := []struct {
		name, in string
		status   int
		want     string
	}{
		{"ok", `{"reason":"x","permissions":["read"]}`, 200, ""},
		{"trailing document", `{"reason":"x"} {"reason":"y"}`, 400, "data after the document"},
		{"trailing garbage", `{"reason":"x"}]`, 400, "data after the document"},
		{"duplicated key", `{"reason":"x","reason":"y"}`, 400, `duplicated field \"reason\"`},
		{"case variant", `{"Reason":"x"}`, 400, `unknown field \"Reason\"`},
		{"case-variant duplicate", `{"permissions":["read"],"Permissions":["admin"]}`, 400, `unknown field \"Permissions\"`},
		{"unknown key", `{"colour":"red"}`, 400, `unknown field \"colour\"`},
		{"oversized", `{"reason":"` + strings.Repeat("a", maxRequestBody) + `"}`, 413, "over the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPost, "/v1/x", strings.NewReader(tt.in))
			var b body
			if readJSON(w, r, &b) {
				w.WriteHeader(200)
			}
			if w.Code != tt.status || !strings.Contains(w.Body.String(), tt.want) {
				t.Fatalf("got %d %s, want %d containing %q", w.Code, w.Body.String(), tt.status, tt.want)
			}
		})
	}
}

// FuzzReadJSON: whatever the body, readJSON answers (no panic) and what
// it accepts is one document of the request's type.
func FuzzReadJSON(f *testing.F) {
	f.Add([]byte(`{"permissions":["read"],"name":"a","cpu_millis":100}`))
	f.Add([]byte(`{"permissions":["read"]} {}`))
	f.Add([]byte(`{"Permissions":["admin"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/cals", strings.NewReader(string(data)))
		var p SpawnParams
		if !readJSON(w, r, &p) && w.Code != 400 && w.Code != 413 {
			t.Fatalf("refused with %d", w.Code)
		}
	})
}
