package engine_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"regexp"
	"testing"

	"github.com/kvstream/kvstream/engine"
	"github.com/stretchr/testify/require"
)

// TestAliasDocsListMethods: go doc does not show the methods of the types
// engine re-exports by alias, so each alias's comment lists them; this
// keeps those lists complete and free of methods that no longer exist.
func TestAliasDocsListMethods(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "types.go", nil, parser.ParseComments)
	require.NoError(t, err)
	docs := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.TYPE {
			continue
		}
		for _, s := range g.Specs {
			ts := s.(*ast.TypeSpec)
			if ts.Assign.IsValid() && ts.Doc != nil {
				docs[ts.Name.Name] = ts.Doc.Text()
			}
		}
	}
	for name, typ := range map[string]reflect.Type{
		"Record":         reflect.TypeFor[*engine.Record](),
		"SequenceNumber": reflect.TypeFor[*engine.SequenceNumber](),
		"ShardID":        reflect.TypeFor[*engine.ShardID](),
		"HashKey":        reflect.TypeFor[*engine.HashKey](),
		"HashRange":      reflect.TypeFor[*engine.HashRange](),
		"Partitioner":    reflect.TypeFor[*engine.Partitioner](),
		"StartPosition":  reflect.TypeFor[*engine.StartPosition](),
		"Iterator":       reflect.TypeFor[*engine.Iterator](),
		"Error":          reflect.TypeFor[*engine.Error](),
	} {
		doc, ok := docs[name]
		require.True(t, ok, "alias %s has a doc comment", name)
		listed := map[string]bool{}
		for _, m := range regexp.MustCompile(`func \([a-z]+ \*?[A-Za-z]+\) ([A-Za-z]+)\(`).FindAllStringSubmatch(doc, -1) {
			listed[m[1]] = true
		}
		for i := range typ.NumMethod() {
			m := typ.Method(i).Name
			require.True(t, listed[m], "the comment of alias %s lists its method %s", name, m)
			delete(listed, m)
		}
		require.Empty(t, listed, "the comment of alias %s lists methods %s does not have", name, name)
	}
}
