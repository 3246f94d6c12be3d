package agentapi

import (
	"bytes"
	"testing"
)

// The host decodes what the guest sends: no byte stream may panic the
// decoder or make it loop.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte(`{"kind":"hello","agent":{"version":"dev"}}` + "\n" + `{"kind":"done"}` + "\n"))
	f.Add([]byte("{\"kind\":\n\x00\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder(bytes.NewReader(data))
		for i := 0; i <= len(data); i++ {
			var ev Event
			if err := d.Decode(&ev); err != nil {
				return
			}
		}
		t.Fatalf("the decoder returned more events than %d bytes hold", len(data))
	})
}
