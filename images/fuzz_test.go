package images

import (
	"os"
	"path/filepath"
	"testing"
)

// A checkpoint directory may come from anywhere: no manifest may panic
// Open, and what Open accepts must carry a schema it knows.
func FuzzOpenManifest(f *testing.F) {
	if data, err := os.ReadFile(filepath.Join("testdata", "v1-checkpoint", ManifestName)); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"schema_version":2,"complete":true,"files":[{"name":"../x","size":1,"sha256":"00"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := filepath.Join(t.TempDir(), "ck")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ManifestName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		set, err := Open(dir)
		if err == nil && (set.Manifest.SchemaVersion < 1 || set.Manifest.SchemaVersion > SchemaVersion) {
			t.Errorf("accepted schema version %d", set.Manifest.SchemaVersion)
		}
	})
}
