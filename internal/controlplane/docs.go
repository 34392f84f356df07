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

type docParam struct {
	Name, In, Type string
	Description    template.HTML
}

type docOp struct {
	Method, Path, OperationID     string
	Summary                       template.HTML
	Params                        []docParam
	RequestExample, ResponseCodes string
	Example                       string
}

// docGroup is a section of the page: the operations on one resource
// (the first segment after /v1/).
type docGroup struct {
	Name, ID string
	Ops      []docOp
}

// codeSpans escapes s and sets each `span` in it as code, as Markdown
// does: the OpenAPI document's prose marks code that way.
func codeSpans(s string) template.HTML {
	parts := strings.Split(s, "`")
	if len(parts)%2 == 0 { // an unpaired backtick stays as it is
		return template.HTML(template.HTMLEscapeString(s))
	}
	var b strings.Builder
	for i, p := range parts {
		if i%2 == 1 {
			b.WriteString("<code>" + template.HTMLEscapeString(p) + "</code>")
		} else {
			b.WriteString(template.HTMLEscapeString(p))
		}
	}
	return template.HTML(b.String())
}

// resourceOf names the group of an API path: /v1/cals/{id}/rules is in
// "cals", /v1/openapi.json in "openapi.json", paths outside /v1 (/healthz,
// /metrics) in "service".
func resourceOf(path string) string {
	rest, ok := strings.CutPrefix(path, "/v1/")
	if !ok {
		return "service"
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	return rest
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
code{padding:.1em .3em;font-size:.92em}
#toc{columns:3 14em;column-gap:2em;border:1px solid #d0d7de;border-radius:6px;padding:.6em 1em;margin:1em 0;font-size:13px}
#toc h2{column-span:all;font-size:1em;margin:.2em 0 .5em} #toc div{break-inside:avoid;margin-bottom:.6em}
#toc b{display:block} #toc a{display:block;color:#0969da;text-decoration:none;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
#toc a:hover{text-decoration:underline} #toc .m{min-width:3.6em;font-size:11px}
h2.group{margin-top:1.6em;border-bottom:1px solid #d0d7de;padding-bottom:.2em} h2.group a{color:inherit;text-decoration:none}
.top{font-size:12px;float:right}
</style></head><body>
<h1 id="top">{{.Title}}</h1>
<p>{{.Description}}</p>
<p>Machine-readable: <a href="/v1/openapi.json">/v1/openapi.json</a> (OpenAPI 3.1). SDKs: Go (<code>client</code>), TypeScript (<code>sdk/typescript</code>), Python (<code>sdk/python</code>). A walk-through is in <code>docs/guide.md</code>.</p>
<nav id="toc" aria-label="contents"><h2>Contents</h2>
{{range .Groups}}<div><b><a href="#{{.ID}}">{{.Name}}</a></b>{{range .Ops}}<a href="#{{.OperationID}}"><span class="m {{.Method}}">{{.Method}}</span> {{.Path}}</a>{{end}}</div>
{{end}}</nav>
{{range .Groups}}<h2 class="group" id="{{.ID}}"><a href="#{{.ID}}">{{.Name}}</a> <a class="top" href="#top">contents ↑</a></h2>
{{range .Ops}}<div class="op" id="{{.OperationID}}">
<div><span class="m {{.Method}}">{{.Method}}</span> <code>{{.Path}}</code> — {{.Summary}}</div>
{{if .Params}}<table>{{range .Params}}<tr><td><code>{{.Name}}</code></td><td>{{.In}}</td><td>{{.Type}}</td><td>{{.Description}}</td></tr>{{end}}</table>{{end}}
<pre>{{.Example}}</pre>
{{if .RequestExample}}<div>Request body:</div><pre>{{.RequestExample}}</pre>{{end}}
<div>Responses: {{.ResponseCodes}}</div>
</div>{{end}}{{end}}
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
				o := docOp{Method: strings.ToUpper(m), Path: path, Summary: codeSpans(op.Summary), OperationID: op.OperationID}
				for _, p := range op.Parameters {
					if p.Ref != "" {
						p.Name, p.In, p.Description = "id", "path", "Cal ID, unique prefix (4+ characters) or name (the live Cal of that name, else the most recent revoked one)"
					}
					o.Params = append(o.Params, docParam{Name: p.Name, In: p.In, Type: jsonString(p.Schema.Type), Description: codeSpans(p.Description)})
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
		var groups []docGroup
		for _, o := range ops { // sorted by path: a resource's operations are together
			name := resourceOf(o.Path)
			if len(groups) == 0 || groups[len(groups)-1].Name != name {
				groups = append(groups, docGroup{Name: name, ID: "resource-" + strings.NewReplacer(".", "-", "{", "", "}", "").Replace(name)})
			}
			groups[len(groups)-1].Ops = append(groups[len(groups)-1].Ops, o)
		}
		var buf bytes.Buffer
		if err := docsPage.Execute(&buf, map[string]any{"Title": doc.Info.Title, "Description": codeSpans(doc.Info.Description), "Groups": groups}); err != nil {
			docsHTML = []byte("docs page: " + template.HTMLEscapeString(err.Error()))
			return
		}
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

// compact is b on one line, or b as it is if it is not JSON.
func compact(b []byte) string {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return string(b)
	}
	return out.String()
}

func (s *Server) handleDocs(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Write(renderDocs())
}
