package p11

import (
	"bytes"
	"testing"

	"github.com/soulfra/calnet/internal/hsm"
	"github.com/soulfra/calnet/internal/strictjson"
)

// FuzzServe feeds the helper arbitrary request lines (logins aside: they
// load the module a request names). Every line gets one answer line,
// and nothing but a login succeeds before one.
func FuzzServe(f *testing.F) {
	f.Add([]byte(`{"op":"encrypt","key":"k","data":"AAEC"}` + "\n"))
	f.Add([]byte(`{"op":"nope"}` + "\n" + `{"op":"decrypt","key":"k","data":"AA"}` + "\n"))
	f.Add([]byte("not json\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, line := range bytes.SplitAfter(in, []byte("\n")) {
			var req hsm.Request
			if strictjson.Unmarshal(bytes.TrimSpace(line), hsm.MaxMessage, &req) == nil && req.Op == "login" {
				return
			}
		}
		var out bytes.Buffer
		if err := Serve(bytes.NewReader(in), &out); err != nil {
			return
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(out.Bytes(), []byte("\n")), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var resp hsm.Response
			if err := strictjson.Unmarshal(line, hsm.MaxMessage, &resp); err != nil {
				t.Fatalf("answer %q: %v", line, err)
			}
			if resp.Error == "" {
				t.Fatalf("a request succeeded without a login: %q", line)
			}
		}
	})
}
