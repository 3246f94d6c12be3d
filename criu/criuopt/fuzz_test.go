package criuopt

import (
	"strings"
	"testing"
)

// Options read from an old manifest are argv words: parsing never panics,
// and what parses comes back the same through its own words.
func FuzzParse(f *testing.F) {
	f.Add("--file-locks\n--external\nmnt[/etc/hosts]:hosts\n--external\ntty[8800:27]")
	f.Add("--external=unix[4242]\n--manage-cgroups=soft\n--root\n/r")
	f.Fuzz(func(t *testing.T, s string) {
		words := strings.Split(s, "\n")
		set, err := Parse(Dump, words)
		if err != nil {
			return
		}
		again, err := Parse(Dump, set.DumpArgs())
		if err != nil {
			t.Fatalf("words %q parse, their DumpArgs %q do not: %v", words, set.DumpArgs(), err)
		}
		if !again.Equal(set) {
			t.Errorf("words %q: %+v, through DumpArgs %+v", words, set, again)
		}
	})
}
