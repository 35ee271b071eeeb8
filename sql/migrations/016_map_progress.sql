-- A map node's progress, kept on its row (no count over its items per finished item):
-- `map_items` is how many it expanded into, `map_failed` how many failed for good
-- (with on_item_error continue or drop); done = map_items - map_remaining.
ALTER TABLE dagq.node_tasks ADD COLUMN map_items int, ADD COLUMN map_failed int NOT NULL DEFAULT 0;
UPDATE dagq.node_tasks p SET map_items = (SELECT count(*) FROM dagq.node_tasks c
                                          WHERE c.parent_id = p.id)
WHERE p.map_over IS NOT NULL AND p.map_remaining IS NOT NULL;
