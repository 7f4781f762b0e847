package ledger_test

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeShowsExampleNewNode checks that the README's embedding snippet
// is ExampleNewNode as written, so that the snippet compiles and runs.
func TestReadmeShowsExampleNewNode(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	const start = "func ExampleNewNode() {"
	i := strings.Index(string(src), start)
	if i < 0 {
		t.Fatal("example_test.go has no ExampleNewNode")
	}
	fn := strings.TrimSpace(string(src[i:]))
	if !strings.Contains(string(readme), "```go\n"+fn+"\n```") {
		t.Errorf("README.md does not show ExampleNewNode as written in example_test.go; copy it:\n%s", fn)
	}
}
