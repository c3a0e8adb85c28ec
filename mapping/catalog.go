package mapping

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

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
	// rep, when set, carries every change to the nodes of a cluster, which apply it
	// through ApplyStream and ApplyStreamDelete (applyMu serialises those).
	rep     Replicator
	applyMu sync.Mutex
}

// Replicator carries stream definition changes to every node of a cluster (the
// cluster package): each call returns once the change is applied on this node.
type Replicator interface {
	// CreateStream fails with log.ErrStreamExists if the stream exists by then.
	CreateStream(ctx context.Context, spec log.StreamSpec, rf int) error
	PutStream(ctx context.Context, spec log.StreamSpec, rf int) error
	// DeleteStream fails with log.ErrUnknownStream if there is no such stream by then.
	DeleteStream(ctx context.Context, name string) error
}

// replicateTimeout bounds how long a change waits for the cluster to apply it.
const replicateTimeout = 30 * time.Second

// SetReplicator makes every later change go through r; a node of a cluster sets it
// before it serves.
func (c *Catalog) SetReplicator(r Replicator) {
	c.mu.Lock()
	c.rep = r
	c.mu.Unlock()
}

// ApplyStream applies a replicated definition on this node: the log's stream with the
// cluster-wide id, then the route (the cluster calls it, in the cluster's order).
func (c *Catalog) ApplyStream(spec log.StreamSpec, id uint32) error {
	d, err := DefinitionFromSpec(spec)
	if err != nil {
		return err
	}
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	if _, err := c.log.EnsureStreamID(spec, id); err != nil {
		return err
	}
	return c.router.Put(d)
}

// ApplyStreamDelete applies a replicated deletion on this node (none if already gone).
func (c *Catalog) ApplyStreamDelete(name string) error {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	c.router.Remove(name)
	if err := c.log.DeleteStream(name); err != nil && !errors.Is(err, log.ErrUnknownStream) {
		return err
	}
	return nil
}

// replicate sends a change through the cluster; the route table and the log have it
// when it returns (ApplyStream ran here).
func (c *Catalog) replicate(d Definition, create bool) (Definition, error) {
	ctx, cancel := context.WithTimeout(context.Background(), replicateTimeout)
	defer cancel()
	put := c.rep.PutStream
	if create {
		put = c.rep.CreateStream
	}
	if err := put(ctx, d.Spec(), int(d.ReplicationFactor)); err != nil {
		if errors.Is(err, log.ErrStreamExists) {
			return Definition{}, fmt.Errorf("stream %q: %w", d.Name, ErrStreamExists)
		}
		return Definition{}, fmt.Errorf("stream %q: %w", d.Name, err)
	}
	if got, ok := c.router.Definition(d.Name); ok {
		return got, nil
	}
	return d, nil
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
	if c.rep != nil {
		return c.replicate(d, true)
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
	if c.rep != nil {
		return c.replicate(d, false)
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
	if c.rep != nil {
		ctx, cancel := context.WithTimeout(context.Background(), replicateTimeout)
		defer cancel()
		if err := c.rep.DeleteStream(ctx, name); err != nil {
			if errors.Is(err, log.ErrUnknownStream) {
				return fmt.Errorf("stream %q: %w", name, ErrUnknownStream)
			}
			return fmt.Errorf("stream %q: %w", name, err)
		}
		return nil
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
		if !errors.Is(err, ErrStreamExists) {
			return nil, 0, err
		}
		// In a cluster another node created it first (every node applies the same
		// config): it is here now, and is made to match like any stored stream.
		if cur, ok = c.Definition(d.Name); !ok {
			return nil, 0, err
		}
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
