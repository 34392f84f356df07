package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/soulfra/calnet/internal/controlplane"
)

var (
	specOnce   sync.Once
	specRouter routers.Router
	specErr    error
)

// apiSpec loads and validates the served OpenAPI document once.
func apiSpec(t *testing.T) routers.Router {
	specOnce.Do(func() {
		openapi3filter.RegisterBodyDecoder("image/svg+xml", openapi3filter.FileBodyDecoder)
		openapi3filter.RegisterBodyDecoder("image/png", openapi3filter.FileBodyDecoder)
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(controlplane.OpenAPI)
		if err != nil {
			specErr = err
			return
		}
		if err := doc.Validate(context.Background()); err != nil {
			specErr = err
			return
		}
		doc.Servers = nil // match any test address
		specRouter, specErr = legacy.NewRouter(doc)
	})
	if specErr != nil {
		t.Fatalf("openapi.json: %v", specErr)
	}
	return specRouter
}

// validating checks every API response against the OpenAPI document: its
// status must be documented and its body must match the schema.
type validating struct {
	t      *testing.T
	router routers.Router
}

func (v validating) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		reqBody, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || strings.HasPrefix(req.URL.Path, "/v1/events") {
		return resp, err
	}
	route, params, rerr := v.router.FindRoute(req)
	if rerr != nil {
		v.t.Errorf("%s %s is not in the OpenAPI document: %v", req.Method, req.URL.Path, rerr)
		return resp, nil
	}
	// A followed log streams forever; check only its status.
	follow := req.URL.Query().Get("follow") == "true"
	var body []byte
	if !follow {
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	req.Body = io.NopCloser(bytes.NewReader(reqBody))
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}},
		Status: resp.StatusCode, Header: resp.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, ExcludeResponseBody: follow},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		v.t.Errorf("%s %s -> %d does not match the OpenAPI document: %v\n%.300s", req.Method, req.URL.Path, resp.StatusCode, err, body)
	}
	return resp, nil
}

func validatingClient(t *testing.T) *http.Client {
	return &http.Client{Transport: validating{t: t, router: apiSpec(t)}}
}

func TestOpenAPIDocumentServed(t *testing.T) {
	needRoot(t)
	n := up(t, t.TempDir()+"/data")
	resp, err := http.Get("http://" + n.addr + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Equal(b, controlplane.OpenAPI) {
		t.Fatalf("served document differs (%d)", resp.StatusCode)
	}
	apiSpec(t)
}

// TestDocs checks the /docs page lists every operation of the OpenAPI
// document, and that every request body in it has an example.
func TestDocs(t *testing.T) {
	needRoot(t)
	n := up(t, t.TempDir()+"/data")
	resp, err := http.Get("http://" + n.addr + "/docs")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/docs: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(controlplane.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if !strings.Contains(string(page), `id="`+op.OperationID+`"`) {
				t.Errorf("/docs lacks %s %s (%s)", method, path, op.OperationID)
			}
			if op.RequestBody != nil {
				for ct, mt := range op.RequestBody.Value.Content {
					if mt.Example == nil {
						t.Errorf("%s %s: request body %s has no example", method, path, ct)
					}
				}
			}
		}
	}
	if strings.Contains(string(page), "<script") {
		t.Error("/docs carries scripts")
	}
}

// TestVerifyAnswerMatchesDocument: the trust chain validator's answer, for
// a valid chain and a tampered one, matches the document, whose required
// lists the dashboard's generated types rely on (every link has its
// parent, Cal, permissions and status; an error its link, reason and
// detail).
func TestVerifyAnswerMatchesDocument(t *testing.T) {
	needRoot(t)
	n := up(t, t.TempDir()+"/data")
	hc, tok := validatingClient(t), readToken(t, n.data)
	call := func(method, path string, body any, out any) {
		t.Helper()
		var r io.Reader
		if body != nil {
			b, err := json.Marshal(body)
			if err != nil {
				t.Fatal(err)
			}
			r = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, "http://"+n.addr+path, r)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	var chain map[string]any
	call("GET", "/v1/cals/"+n.master()+"/chain", nil, &chain)
	raw, _ := json.Marshal(chain)
	type answer struct {
		Valid bool
		Error *struct{ Reason string }
		Links []struct{ Status string }
	}
	var ok answer
	call("POST", "/v1/verify", map[string]string{"chain": string(raw)}, &ok)
	if !ok.Valid || len(ok.Links) == 0 || ok.Links[0].Status != "ok" {
		t.Fatalf("valid chain: %+v", ok)
	}
	sig := chain["blessings"].([]any)[0].(map[string]any)["signature"].(map[string]any)
	ed := sig["ed25519"].(string)
	flip := byte('A')
	if ed[5] == 'A' {
		flip = 'B'
	}
	sig["ed25519"] = ed[:5] + string(flip) + ed[6:]
	raw, _ = json.Marshal(chain)
	var bad answer
	call("POST", "/v1/verify", map[string]string{"chain": string(raw)}, &bad)
	if bad.Valid || bad.Error == nil || bad.Error.Reason != "bad-signature" || bad.Links[0].Status != "failed" {
		t.Fatalf("tampered chain: %+v", bad)
	}
}
