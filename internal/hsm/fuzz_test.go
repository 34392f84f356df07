package hsm

import (
	"errors"
	"testing"
)

func FuzzParseResponse(f *testing.F) {
	f.Add([]byte(`{"data":"AAEC"}`))
	f.Add([]byte(`{"error":"bad","reason":"wrong-pin"}`))
	f.Add([]byte(`{"error":"x","reason":"unknown"}`))
	f.Add([]byte(`{"data":"AAEC","data":"AA"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		data, err := parseResponse(b)
		if err == nil && len(data) > MaxMessage {
			t.Fatalf("accepted %d bytes", len(data))
		}
		if err != nil && errors.Is(err, ErrWrongPIN) && data != nil {
			t.Fatal("data with an error")
		}
	})
}
