package gate

import "github.com/kata-cr/kata-cr/internal/tomlfile"

// locator finds the line of a key in a matrix file (tomlfile.Locator).
type locator struct{ *tomlfile.Locator }

func newLocator(data []byte) *locator { return &locator{tomlfile.NewLocator(data)} }

// line is the line of key in the idx-th [[table]] (tomlfile.Locator.Line).
func (l *locator) line(table string, idx int, key string) int { return l.Line(table, idx, key) }
