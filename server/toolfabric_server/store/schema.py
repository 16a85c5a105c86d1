"""The store's tables (SQLAlchemy Core): one schema for SQLite and PostgreSQL.

Times are float epoch seconds (the same on both engines, sortable, no time-zone conversions);
labels live in their own table so a label filter is an indexed join on either engine; events are
the serialized `RunEvent` protobufs, as GetTrajectory returns them.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

trajectories = sa.Table(
    "trajectories", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("trace_id", sa.String(64), nullable=False, default=""),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("mode", sa.SmallInteger, nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("answer", sa.Text, nullable=False, default=""),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("eval_run", sa.String(200), nullable=False, default=""),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("budgets", sa.JSON, nullable=False),
    sa.Column("sampling", sa.JSON, nullable=False),
    sa.Column("usage", sa.LargeBinary, nullable=True),
    sa.Column("steps", sa.Integer, nullable=False, default=0),
    sa.Column("tool_calls", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("finished_at", sa.Double, nullable=True),
    sa.Index("ix_trajectories_created", "created_at", "id"),
    sa.Index("ix_trajectories_eval_run", "eval_run", "created_at"),
    sa.Index("ix_trajectories_model", "model"),
    sa.Index("ix_trajectories_status", "status"),
)

labels = sa.Table(
    "trajectory_labels", metadata,
    sa.Column("trajectory_id", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.String(1000), nullable=False),
    sa.Index("ix_labels_key_value", "key", "value"),
)

events = sa.Table(
    "trajectory_events", metadata,
    sa.Column("trajectory_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

images = sa.Table(
    "images", metadata,
    sa.Column("blob", sa.String(71), primary_key=True),
    sa.Column("mime_type", sa.String(100), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
)

# Which trajectory saw or made which image: an image is deleted with the last trajectory that references it.
image_refs = sa.Table(
    "trajectory_images", metadata,
    sa.Column("trajectory_id", sa.String(64), primary_key=True),
    sa.Column("blob", sa.String(71), primary_key=True),
    sa.Index("ix_trajectory_images_blob", "blob"),
)
