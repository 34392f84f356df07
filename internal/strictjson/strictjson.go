// Package strictjson decodes untrusted JSON documents with the checks that
// encoding/json leaves out: a size limit, a nesting limit, rejection of
// duplicated object keys, unknown fields and trailing data.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxNesting is the deepest object/array nesting any calnet document may use.
const MaxNesting = 16

// Unmarshal decodes data into v. It fails when data is larger than maxSize
// bytes, nests deeper than MaxNesting, repeats a key inside one object, has a
// field v does not declare, or carries anything after the first value.
func Unmarshal(data []byte, maxSize int, v any) error {
	if len(data) > maxSize {
		return fmt.Errorf("document is %d bytes, over the limit of %d", len(data), maxSize)
	}
	if err := CheckStructure(data); err != nil {
		return err
	}
	return UnmarshalChecked(data, maxSize, v)
}

// UnmarshalChecked is Unmarshal for a fragment of a document that already
// passed CheckStructure: it skips that second walk.
func UnmarshalChecked(data []byte, maxSize int, v any) error {
	if len(data) > maxSize {
		return fmt.Errorf("document is %d bytes, over the limit of %d", len(data), maxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("invalid JSON: data after the document")
	}
	return nil
}

// CheckStructure walks the token stream of data and reports duplicated keys
// (naming the key and its path) and nesting deeper than MaxNesting.
func CheckStructure(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]struct{}
		want   bool // next string token in an object is a key
		path   string
	}
	var stack []*frame
	path := "$"
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("invalid JSON: %w", err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.want {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].object {
					stack[len(stack)-1].want = true
				}
				continue
			}
			key, _ := tok.(string)
			if _, dup := top.keys[key]; dup {
				return fmt.Errorf("invalid JSON: duplicated field %q at %s", key, top.path)
			}
			top.keys[key] = struct{}{}
			top.want = false
			path = top.path + "." + key
			continue
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if len(stack) >= MaxNesting {
					return fmt.Errorf("invalid JSON: nesting deeper than %d at %s", MaxNesting, path)
				}
				stack = append(stack, &frame{object: t == '{', keys: map[string]struct{}{}, want: t == '{', path: path})
				continue
			case '}', ']':
				stack = stack[:len(stack)-1]
			}
		}
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].want = true
		}
	}
}
