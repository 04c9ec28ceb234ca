package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"github.com/spf13/pflag"

	"ferry/configs"
)

// readmeKey is one row of the table of config keys in docs/configuration.md:
// | `key` | node | `default` | what it does |
type readmeKey struct {
	key, node, def, what string
	line                 int
}

// readmeKeys reads the rows of the key table in the Configuration section
// of docs/configuration.md. A row that does not have the table's shape is
// an error, so a typo cannot hide a key from TestConfigPageDocumentsEveryKey.
func readmeKeys(path string) ([]readmeKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rows []readmeKey
	in := false
	for i, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "## ") {
			in = l == "## Configuration"
			continue
		}
		if !in || !strings.HasPrefix(l, "|") {
			continue
		}
		// GitHub splits cells at every | not escaped as \|, in code too.
		l = strings.ReplaceAll(l, `\|`, "\x00")
		cells := strings.Split(strings.Trim(strings.TrimSpace(l), "|"), "|")
		for j := range cells {
			cells[j] = strings.ReplaceAll(strings.TrimSpace(cells[j]), "\x00", "|")
		}
		if len(cells) > 0 && (cells[0] == "key" || strings.Trim(cells[0], "-:") == "") {
			continue // the header and the line under it
		}
		code := func(s string) (string, bool) {
			if len(s) >= 3 && s[0] == '`' && s[len(s)-1] == '`' {
				return s[1 : len(s)-1], true
			}
			return "", false
		}
		if len(cells) != 4 {
			return nil, fmt.Errorf("%s:%d: a key row has 4 cells, | `key` | edge, full or both | `default` | what it does |; this one has %d", path, i+1, len(cells))
		}
		key, okKey := code(cells[0])
		def, okDef := code(cells[2])
		if !okKey || !okDef || cells[3] == "" {
			return nil, fmt.Errorf("%s:%d: want | `key` | edge, full or both | `default` | what it does |", path, i+1)
		}
		rows = append(rows, readmeKey{key: key, node: cells[1], def: def, what: cells[3], line: i + 1})
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: no table of config keys in the Configuration section", path)
	}
	return rows, nil
}

// Every flag of ferry edge and ferry full (but --config) has a row in the
// table of config keys of docs/configuration.md (the flags page), for its command or for both, whose
// default, read as a config file would be, is the flag's; and every row
// names a flag of the command(s) it is for, once. So the page cannot
// fall behind the flags: a new flag fails here with the row to add.
func TestConfigPageDocumentsEveryKey(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "configuration.md")
	rows, err := readmeKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	modes := []string{"edge", "full"}
	documented := map[string]map[string]readmeKey{"edge": {}, "full": {}}
	for _, r := range rows {
		var nodes []string
		switch r.node {
		case "both":
			nodes = modes
		case "edge", "full":
			nodes = []string{r.node}
		default:
			t.Errorf("%s:%d: %s: node %q, want edge, full or both", path, r.line, r.key, r.node)
			continue
		}
		for _, m := range nodes {
			if prev, dup := documented[m][r.key]; dup {
				t.Errorf("%s:%d: %s: a second row for ferry %s (the first is line %d)", path, r.line, r.key, m, prev.line)
				continue
			}
			documented[m][r.key] = r
		}
	}
	for _, m := range modes {
		fs, _ := nodeFlagSet(t, m)
		fs.VisitAll(func(fl *pflag.Flag) {
			if fl.Name == "config" {
				return
			}
			r, ok := documented[m][fl.Name]
			if !ok {
				t.Errorf("%s: no row for %s, a key of ferry %s; add it to the table in Configuration (both if ferry %s has it too, with this default):\n\n| `%s` | %s | `%s` | %s |\n",
					path, fl.Name, m, other(m), fl.Name, m, yamlDefault(fl), fl.Usage)
				return
			}
			if err := defaultReads(t, m, fl, r.def); err != nil {
				t.Errorf("%s:%d: %s (ferry %s): %v (write `%s`)", path, r.line, fl.Name, m, err, yamlDefault(fl))
			}
		})
		for key, r := range documented[m] {
			if fs.Lookup(key) == nil || key == "config" {
				t.Errorf("%s:%d: %s: a row for ferry %s (%s), which has no such key", path, r.line, key, m, r.node)
			}
		}
	}
}

func other(mode string) string {
	if mode == "edge" {
		return "full"
	}
	return "edge"
}

// defaultReads says whether def, a default as a config file would write it,
// sets flag fl of a fresh ferry mode to its default value.
func defaultReads(t *testing.T, mode string, fl *pflag.Flag, def string) error {
	t.Helper()
	doc, err := configs.Parse("default", []byte("mode: "+mode+"\n"+fl.Name+": "+def+"\n"))
	fresh, _ := nodeFlagSet(t, mode)
	if err == nil {
		err = doc.Apply(fresh, mode, nil)
	}
	if err != nil {
		return fmt.Errorf("the documented default %s does not read: %v", def, err)
	}
	if got := fresh.Lookup(fl.Name).Value.String(); got != fl.DefValue {
		return fmt.Errorf("the documented default %s is %q, the flag's is %q", def, got, fl.DefValue)
	}
	return nil
}

// mdLink is an inline Markdown link or image: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// anchors returns the heading anchors of a Markdown file as GitHub makes
// them: lower case, spaces to hyphens, punctuation but - and _ dropped, a
// repeated heading suffixed -1, -2, …
func anchors(text string) map[string]bool {
	out := map[string]bool{}
	fenced := false
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "```") {
			fenced = !fenced
		}
		if fenced || !strings.HasPrefix(l, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(l, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteByte('-')
			}
		}
		a := b.String()
		for i, base := 1, a; out[a]; i++ {
			a = fmt.Sprintf("%s-%d", base, i)
		}
		out[a] = true
	}
	return out
}

// Every relative link in README.md and docs/*.md names a file that exists,
// and, for a link into a Markdown file with a #fragment, one of its
// headings: moving reference text between pages cannot leave a link
// dangling.
func TestDocsLinksResolve(t *testing.T) {
	root := filepath.Join("..", "..")
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join(root, "README.md"), filepath.Join(root, "DESIGN.md"))
	checked := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fenced := false
		for i, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "```") {
				fenced = !fenced
			}
			if fenced {
				continue
			}
			for _, m := range mdLink.FindAllStringSubmatch(l, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				checked++
				path, frag, _ := strings.Cut(target, "#")
				file := f
				if path != "" {
					file = filepath.Join(filepath.Dir(f), filepath.FromSlash(path))
				}
				if _, err := os.Stat(file); err != nil {
					t.Errorf("%s:%d: link %s: no such file %s", f, i+1, target, file)
					continue
				}
				if frag == "" || !strings.HasSuffix(file, ".md") {
					continue
				}
				text, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				if !anchors(string(text))[frag] {
					t.Errorf("%s:%d: link %s: %s has no heading #%s", f, i+1, target, file, frag)
				}
			}
		}
	}
	if checked < 30 {
		t.Fatalf("only %d relative links found: is the link pattern wrong?", checked)
	}
}
