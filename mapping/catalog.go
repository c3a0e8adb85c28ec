package mapping

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/mqstreams/mqstreams/log"
)

// Errors the catalog's callers branch on (each door maps them to its protocol's code).
var (
	// ErrStreamExists: a create named a stream that exists.
	ErrStreamExists = errors.New("stream already exists")
	// ErrUnknownStream: an alter or delete named a stream that does not exist.
	ErrUnknownStream = errors.New("unknown stream")
	// ErrInvalid: the definition or the change is refused (bad field, shrinking shards).
	ErrInvalid = errors.New("invalid stream definition")
)

// Catalog is the one owner of the stream definitions: it keeps the typed definitions,
// the router built from them and the log's streams in step. Every create, alter and
// delete goes through it, serialised; each is one durable Pebble write in the log, and
// routing of new publishes switches right after it with one atomic pointer swap
// (docs/catalog.md).
type Catalog struct {
	log    *log.Log
	router *Router

	mu sync.Mutex // serialises changes; readers never take it
}

// OpenCatalog reads every stream the log stores, decoding its definition once, and
// builds the router from them.
func OpenCatalog(l *log.Log) (*Catalog, error) {
	c := &Catalog{log: l, router: NewRouter()}
	var defs []Definition
	for _, s := range l.Streams() {
		d, err := DefinitionFromSpec(s.Spec())
		if err != nil {
			return nil, fmt.Errorf("stored stream %q: %w", s.Name(), err)
		}
		defs = append(defs, d)
	}
	if err := c.router.Set(defs); err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}
	return c, nil
}

// Router is the router the catalog keeps current; MQTT ingest routes with it.
func (c *Catalog) Router() *Router { return c.router }

// Definition returns the named stream's definition.
func (c *Catalog) Definition(name string) (Definition, bool) { return c.router.Definition(name) }

// Definitions returns every stream's definition, sorted by name.
func (c *Catalog) Definitions() []Definition { return c.router.Definitions() }

// Stream returns the named stream of the log, or nil.
func (c *Catalog) Stream(name string) *log.Stream { return c.log.Stream(name) }

// StreamByFilter returns the definition of the first stream (by name) one of whose
// topic filters is filter.
func (c *Catalog) StreamByFilter(filter string) (Definition, bool) {
	for _, d := range c.router.Definitions() {
		if slices.Contains(d.Filters, filter) {
			return d, true
		}
	}
	return Definition{}, false
}

// Create adds a stream. needFilter false admits a stream with no topic filter (one
// Kafka producers alone write). It returns the definition with its defaults filled.
func (c *Catalog) Create(d Definition, needFilter bool) (Definition, error) {
	if err := check(&d, needFilter); err != nil {
		return Definition{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.router.Definition(d.Name); ok {
		return Definition{}, fmt.Errorf("stream %q: %w", d.Name, ErrStreamExists)
	}
	if _, err := c.log.CreateStream(d.Spec()); err != nil {
		if errors.Is(err, log.ErrStreamExists) {
			return Definition{}, fmt.Errorf("stream %q: %w", d.Name, ErrStreamExists)
		}
		return Definition{}, err
	}
	// The stream exists before anything routes to it: no publish finds it missing.
	if err := c.router.Put(d); err != nil {
		return Definition{}, fmt.Errorf("stream %q: route: %w", d.Name, err)
	}
	return d, nil
}

// Alter replaces an existing stream's definition. Shards may grow, never shrink:
// stored records keep their shard, new ones follow the new count.
func (c *Catalog) Alter(d Definition, needFilter bool) (Definition, error) {
	return c.alter(d.Name, func(Definition) (Definition, error) { return d, nil }, needFilter)
}

// Update applies change to the current definition of name, under the catalog's lock,
// so two admins changing one stream at once are serialised and neither change is lost.
func (c *Catalog) Update(name string, change func(Definition) (Definition, error)) (Definition, error) {
	return c.alter(name, change, false)
}

func (c *Catalog) alter(name string, change func(Definition) (Definition, error), needFilter bool) (Definition, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, ok := c.router.Definition(name)
	if !ok {
		return Definition{}, fmt.Errorf("stream %q: %w", name, ErrUnknownStream)
	}
	d, err := change(cur)
	if err != nil {
		return Definition{}, err
	}
	if d.Name != name {
		return Definition{}, Invalidf("stream %q: name: cannot be changed (to %q)", name, d.Name)
	}
	if err := check(&d, needFilter); err != nil {
		return Definition{}, err
	}
	if d.Shards < cur.Shards {
		return Definition{}, Invalidf("stream %q: shards: cannot shrink from %d to %d", name, cur.Shards, d.Shards)
	}
	if _, err := c.log.UpdateStream(d.Spec()); err != nil {
		return Definition{}, err
	}
	// The log has the new shards before routing may pick them.
	if err := c.router.Put(d); err != nil {
		return Definition{}, fmt.Errorf("stream %q: route: %w", name, err)
	}
	return d, nil
}

// Delete removes a stream: routing first, so no new publish is sent to it, then its
// data, committed offsets and definition in one write. Readers see the stream gone.
func (c *Catalog) Delete(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, ok := c.router.Definition(name)
	if !ok {
		return fmt.Errorf("stream %q: %w", name, ErrUnknownStream)
	}
	c.router.Remove(name)
	if err := c.log.DeleteStream(name); err != nil {
		if c.log.Stream(name) != nil {
			_ = c.router.Put(cur) // the stream is still there: route to it again
		}
		return err
	}
	return nil
}

// Ensure creates d or, when it exists, makes it match d (the config file wins over a
// stored definition). changed lists the fields that differed, for the operator's log.
// Shards never shrink: when d asks fewer than stored (grown at run time), the stored
// count stays and keptShards says so.
func (c *Catalog) Ensure(d Definition) (changed []string, keptShards int32, err error) {
	if err := check(&d, true); err != nil {
		return nil, 0, err
	}
	cur, ok := c.Definition(d.Name)
	if !ok {
		_, err := c.Create(d, true)
		return nil, 0, err
	}
	if d.Shards < cur.Shards {
		d.Shards, keptShards = cur.Shards, cur.Shards
	}
	changed = Diff(cur, d)
	if len(changed) == 0 {
		return nil, keptShards, nil
	}
	_, err = c.Alter(d, true)
	return changed, keptShards, err
}

// Diff names the fields in which a and b differ.
func Diff(a, b Definition) []string {
	var out []string
	add := func(name string, differs bool) {
		if differs {
			out = append(out, name)
		}
	}
	add("filters", !slices.Equal(a.Filters, b.Filters))
	add("shards", a.Shards != b.Shards)
	add("key", a.Key != b.Key)
	add("last_value", a.LastValue != b.LastValue)
	add("retention.max_age", a.Retention.MaxAge != b.Retention.MaxAge)
	add("retention.max_bytes", a.Retention.MaxBytes != b.Retention.MaxBytes)
	add("retention.max_messages", a.Retention.MaxMessages != b.Retention.MaxMessages)
	add("compression", a.Spec().Compression != b.Spec().Compression) // "" and none are one
	return out
}

// check validates d (filling defaults), wrapping the reason with ErrInvalid.
func check(d *Definition, needFilter bool) error {
	d.Filters = slices.Clone(d.Filters)
	var err error
	if needFilter {
		err = d.Validate()
	} else {
		err = d.ValidateKafkaOnly()
	}
	if err != nil {
		return Invalid(err)
	}
	return nil
}

// Invalid marks err as a refused definition or change: errors.Is(…, ErrInvalid) holds,
// and its message is err's alone, ready for a protocol's own error (400, INVALID_CONFIG).
func Invalid(err error) error { return invalidError{err} }

// Invalidf is Invalid(fmt.Errorf(format, args...)).
func Invalidf(format string, args ...any) error { return invalidError{fmt.Errorf(format, args...)} }

type invalidError struct{ err error }

func (e invalidError) Error() string        { return e.err.Error() }
func (e invalidError) Unwrap() error        { return e.err }
func (e invalidError) Is(target error) bool { return target == ErrInvalid }
