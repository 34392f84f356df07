package controlplane

import (
	"bytes"
	"encoding/json"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"sync"
)

// The API documentation page at /docs, rendered on the server from the
// OpenAPI document (no scripts, no external assets; every value escaped).

type docParam struct{ Name, In, Type, Description string }

type docOp struct {
	Method, Path, Summary, OperationID string
	Params                             []docParam
	RequestExample, ResponseCodes      string
	Example                            string
}

var docsPage = template.Must(template.New("docs").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>calnet API</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#1b1f24}
h1{margin-bottom:.2em} .op{border:1px solid #d0d7de;border-radius:6px;margin:1em 0;padding:.6em 1em}
.m{display:inline-block;min-width:4.5em;font-weight:700;font-family:monospace}
.GET{color:#0969da}.POST{color:#1a7f37}.DELETE{color:#cf222e}
code,pre{font-family:ui-monospace,monospace;background:#f6f8fa;border-radius:4px}
pre{padding:.6em;overflow:auto} table{border-collapse:collapse} td{padding:2px 10px 2px 0;vertical-align:top}
</style></head><body>
<h1>{{.Title}}</h1>
<p>{{.Description}}</p>
<p>Machine-readable: <a href="/v1/openapi.json">/v1/openapi.json</a> (OpenAPI 3.1). SDKs: Go (<code>client</code>), TypeScript (<code>sdk/typescript</code>), Python (<code>sdk/python</code>). A walk-through is in <code>docs/guide.md</code>.</p>
{{range .Ops}}<div class="op" id="{{.OperationID}}">
<div><span class="m {{.Method}}">{{.Method}}</span> <code>{{.Path}}</code> — {{.Summary}}</div>
{{if .Params}}<table>{{range .Params}}<tr><td><code>{{.Name}}</code></td><td>{{.In}}</td><td>{{.Type}}</td><td>{{.Description}}</td></tr>{{end}}</table>{{end}}
<pre>{{.Example}}</pre>
{{if .RequestExample}}<div>Request body:</div><pre>{{.RequestExample}}</pre>{{end}}
<div>Responses: {{.ResponseCodes}}</div>
</div>{{end}}
</body></html>`))

var (
	docsOnce sync.Once
	docsHTML []byte
)

// renderDocs builds the page once from the embedded OpenAPI document.
func renderDocs() []byte {
	docsOnce.Do(func() {
		var doc struct {
			Info  struct{ Title, Description string }
			Paths map[string]map[string]struct {
				OperationID string `json:"operationId"`
				Summary     string
				Parameters  []struct {
					Ref         string `json:"$ref"`
					Name, In    string
					Description string
					Schema      struct{ Type any }
				}
				RequestBody *struct {
					Content map[string]struct{ Example any }
				} `json:"requestBody"`
				Responses map[string]any
			}
		}
		if err := json.Unmarshal(OpenAPI, &doc); err != nil {
			docsHTML = []byte("openapi.json: " + template.HTMLEscapeString(err.Error()))
			return
		}
		var ops []docOp
		for path, methods := range doc.Paths {
			for m, op := range methods {
				o := docOp{Method: strings.ToUpper(m), Path: path, Summary: op.Summary, OperationID: op.OperationID}
				for _, p := range op.Parameters {
					if p.Ref != "" {
						p.Name, p.In, p.Description = "id", "path", "Cal ID, unique prefix (4+ characters) or name (the live Cal of that name, else the most recent revoked one)"
					}
					o.Params = append(o.Params, docParam{Name: p.Name, In: p.In, Type: jsonString(p.Schema.Type), Description: p.Description})
				}
				curl := "curl -H \"Authorization: Bearer $CALNET_TOKEN\" "
				if o.Method != "GET" {
					curl += "-X " + o.Method + " "
				}
				if op.RequestBody != nil {
					for _, c := range op.RequestBody.Content {
						if c.Example != nil {
							b, _ := json.MarshalIndent(c.Example, "", "  ")
							o.RequestExample = string(b)
							curl += "-d '" + compact(b) + "' "
						}
					}
				}
				o.Example = curl + "http://127.0.0.1:7070" + path
				var codes []string
				for c := range op.Responses {
					codes = append(codes, c)
				}
				sort.Strings(codes)
				o.ResponseCodes = strings.Join(codes, ", ")
				ops = append(ops, o)
			}
		}
		sort.Slice(ops, func(i, j int) bool {
			if ops[i].Path != ops[j].Path {
				return ops[i].Path < ops[j].Path
			}
			return ops[i].Method < ops[j].Method
		})
		var buf bytes.Buffer
		docsPage.Execute(&buf, map[string]any{"Title": doc.Info.Title, "Description": doc.Info.Description, "Ops": ops})
		docsHTML = buf.Bytes()
	})
	return docsHTML
}

func jsonString(v any) string {
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func compact(b []byte) string {
	var out bytes.Buffer
	json.Compact(&out, b)
	return out.String()
}

func (s *Server) handleDocs(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Write(renderDocs())
}
