package e2e

import (
	"bytes"
	"context"
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
