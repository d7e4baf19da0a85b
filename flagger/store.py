"""The review store: notes, suggestions, decisions, people, API keys and an audit log.

One store for every writer: ``flagger scan --to-review``, the service's ``queue``
option and the DSL review workspace. SQLAlchemy 2 models; SQLite file by default,
PostgreSQL by URL; schema changes go through Alembic (``flagger/migrations``).

Privacy: a note's text is kept only while review needs it (see ``purge``); audit
events and API keys never hold note text; API key secrets are stored hashed.

Nothing here refers or confirms anything by itself: a suggestion changes state only
through a decision by a named user.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    case,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    selectinload,
    sessionmaker,
)

from . import review as rv
from .categories import CATEGORIES, CATEGORY_KEYS
from .errors import ConflictError, NotFoundError, PermissionDenied, StoreError
from .schema import Explanation, NoteResult

SUGGESTION_STATES = ("pending", "confirmed", "rejected", "recategorised", "awaiting_second_review")
USER_ROLES = ("reviewer", "admin")
KEY_ROLES = ("scanner", "reviewer", "admin")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def text_hash(text: str) -> str:
    """SHA-256 of the note text: the idempotency key with the note id."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Note(Base):
    __tablename__ = "notes"
    __table_args__ = (UniqueConstraint("note_key", "text_hash", name="uq_note_key_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    note_key: Mapped[str] = mapped_column(String(200), index=True)
    text_hash: Mapped[str] = mapped_column(String(64))
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    text_purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    case_id: Mapped[str | None] = mapped_column(String(200), index=True, nullable=True)
    note_date: Mapped[str | None] = mapped_column(String(40), nullable=True)
    author_role: Mapped[str | None] = mapped_column(String(100), nullable=True)
    team: Mapped[str | None] = mapped_column(String(100), index=True, nullable=True)
    source: Mapped[str] = mapped_column(String(20), default="batch")
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)

    suggestions: Mapped[list["Suggestion"]] = relationship(back_populates="note", cascade="all, delete-orphan")


class Suggestion(Base):
    __tablename__ = "suggestions"
    __table_args__ = (UniqueConstraint("note_id", "category", "origin", name="uq_suggestion_note_cat"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    note_id: Mapped[int] = mapped_column(ForeignKey("notes.id", ondelete="CASCADE"), index=True)
    category: Mapped[str] = mapped_column(String(40), index=True)
    level: Mapped[str] = mapped_column(String(10), index=True)
    score: Mapped[float] = mapped_column(Float)
    origin: Mapped[str] = mapped_column(String(20), default="flagger")  # flagger | reviewer
    state: Mapped[str] = mapped_column(String(30), default="pending", index=True)
    evidence: Mapped[list[Any]] = mapped_column(JSON, default=list)
    explanation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    why: Mapped[str] = mapped_column(Text, default="")
    lexicon_version: Mapped[str | None] = mapped_column(String(60), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(60), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Optimistic concurrency: a decision names the version it saw; a stale one is refused.
    version: Mapped[int] = mapped_column(Integer, default=1)

    note: Mapped[Note] = relationship(back_populates="suggestions")
    decisions: Mapped[list["Decision"]] = relationship(back_populates="suggestion", order_by="Decision.id")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(300), nullable=True)
    role: Mapped[str] = mapped_column(String(20), default="reviewer")
    team: Mapped[str | None] = mapped_column(String(100), nullable=True)
    hidden_categories: Mapped[list[Any]] = mapped_column(JSON, default=list)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # For single sign-on later: (issuer, subject) identify an OIDC user; no schema change needed.
    sso_issuer: Mapped[str | None] = mapped_column(String(300), nullable=True)
    sso_subject: Mapped[str | None] = mapped_column(String(300), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Decision(Base):
    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    suggestion_id: Mapped[int] = mapped_column(ForeignKey("suggestions.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    action: Mapped[str] = mapped_column(String(30))  # confirm | reject | recategorise | add | second_signoff
    reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    new_category: Mapped[str | None] = mapped_column(String(40), nullable=True)
    new_level: Mapped[str | None] = mapped_column(String(10), nullable=True)
    versions_seen: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    suggestion: Mapped[Suggestion] = relationship(back_populates="decisions")
    user: Mapped[User] = relationship()


class AuditEvent(Base):
    """Append-only: the store exposes no update or delete for these rows."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(120))  # "user:3", "key:ab12cd", "system"
    action: Mapped[str] = mapped_column(String(40), index=True)
    object_type: Mapped[str] = mapped_column(String(30))
    object_id: Mapped[str] = mapped_column(String(200), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ReviewSession(Base):
    """A signed-in reviewer's browser session. The cookie holds a random token; only its
    hash is stored, so a database read does not hand out live sessions."""

    __tablename__ = "review_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # Foreign keys are off by default in SQLite; WAL lets readers and one writer overlap.
    if type(dbapi_conn).__module__.startswith("sqlite3"):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()


MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class ReviewStore:
    """Access to the review database.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///flagger.db`` or
            ``postgresql+psycopg://user@host/db``.
        migrate: bring the schema up to date (Alembic ``upgrade head``) on open.
        password_hasher: an ``argon2.PasswordHasher`` (default: argon2id, library defaults).
    """

    def __init__(self, url: str, *, migrate: bool = True, password_hasher: Any = None):
        self.url = url
        # argon2id with the library's defaults (RFC 9106 low-memory profile); tests pass a cheaper one.
        self._ph = password_hasher or _hasher()
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        self.engine = create_engine(url, future=True, pool_pre_ping=True)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    # -- schema -----------------------------------------------------------
    def migrate(self) -> None:
        """Apply every Alembic migration not yet applied (idempotent)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option("sqlalchemy.url", self.engine.url.render_as_string(hide_password=False))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def session(self) -> Session:
        return self.Session()

    # -- audit ------------------------------------------------------------
    @staticmethod
    def add_audit(session: Session, *, actor: str, action: str, object_type: str, object_id: Any,
                  details: dict[str, Any] | None = None) -> None:
        """Record an audit event in the caller's transaction (never note text)."""
        session.add(AuditEvent(actor=actor, action=action, object_type=object_type,
                               object_id=str(object_id), details=details or {}))

    def audit(self, **kw: Any) -> None:
        with self.session() as s, s.begin():
            self.add_audit(s, **kw)

    # -- queueing suggestions ------------------------------------------------
    def enqueue(self, result: NoteResult, text: str, *, actor: str = "system", source: str = "batch",
                team: str | None = None) -> list[int]:
        """Put a scanned note's concerns in the review queue.

        Idempotent per (note id, text hash): scanning the same note again returns the
        existing suggestion ids and adds nothing. A note with no concerns is not stored.

        Returns:
            The ids of the note's suggestions (new or existing).

        Raises:
            StoreError: when the result is an error result.
        """
        if result.status != "scanned":
            raise StoreError(f"note {result.id!r}: only scanned results can be queued")
        if not result.concerns:
            return []
        h = text_hash(text)
        meta = result.meta or {}
        with self.session() as s, s.begin():
            existing = s.scalar(select(Note).where(Note.note_key == result.id, Note.text_hash == h))
            if existing is not None:
                return [sg.id for sg in existing.suggestions]
            note = Note(
                note_key=result.id, text_hash=h, text=text,
                case_id=_opt_str(meta.get("case_id")), note_date=_opt_str(meta.get("note_date")),
                author_role=_opt_str(meta.get("author_role")), team=team or _opt_str(meta.get("team")),
                source=source,
                result=result.model_dump(mode="json", exclude={"meta"}),
            )
            s.add(note)
            for c in result.concerns:
                note.suggestions.append(Suggestion(
                    category=c.category, level=c.level, score=c.score, origin="flagger", state="pending",
                    evidence=[e.model_dump(mode="json") for e in c.evidence],
                    explanation=c.explanation.model_dump(mode="json"), why=c.why,
                    lexicon_version=result.versions.lexicons if result.versions else None,
                    model_version=result.versions.model if result.versions else None,
                ))
            s.flush()
            self.add_audit(s, actor=actor, action="queue", object_type="note", object_id=note.id,
                           details={"note_key": result.id, "suggestions": len(note.suggestions), "source": source})
            return [sg.id for sg in note.suggestions]

    def enqueue_many(self, pairs: Iterable[tuple[NoteResult, str]], **kw: Any) -> int:
        """Queue many (result, text) pairs; returns how many suggestions are in the queue for them."""
        return sum(len(self.enqueue(r, t, **kw)) for r, t in pairs)

    # -- API keys -------------------------------------------------------------
    @staticmethod
    def _hash_secret(secret: str) -> str:
        # Keys are 32 random bytes, so a fast hash is safe here (no dictionary attack).
        return hashlib.sha256(secret.encode()).hexdigest()

    def create_api_key(self, name: str, role: str, *, actor: str = "system") -> tuple[str, str]:
        """Create a key. Returns ``(key_id, token)``; the token is shown once, stored hashed."""
        if role not in KEY_ROLES:
            raise StoreError(f"unknown key role {role!r}; use one of {', '.join(KEY_ROLES)}")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with self.session() as s, s.begin():
            s.add(ApiKey(key_id=key_id, secret_hash=self._hash_secret(secret), name=name, role=role))
            self.add_audit(s, actor=actor, action="key_create", object_type="api_key", object_id=key_id,
                           details={"role": role, "name": name})
        return key_id, f"flg_{key_id}_{secret}"

    def verify_api_key(self, token: str) -> ApiKey | None:
        """The active key for a token, or None (unknown, malformed or revoked)."""
        parts = token.split("_", 2) if token else []
        if len(parts) != 3 or parts[0] != "flg":
            return None
        with self.session() as s, s.begin():
            key = s.scalar(select(ApiKey).where(ApiKey.key_id == parts[1]))
            if key is None or key.revoked_at is not None:
                return None
            if not hmac.compare_digest(key.secret_hash, self._hash_secret(parts[2])):
                return None
            key.last_used_at = utcnow()
            s.flush()
            s.expunge(key)
            return key

    def revoke_api_key(self, key_id: str, *, actor: str = "system") -> None:
        with self.session() as s, s.begin():
            key = s.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
            if key is None:
                raise NotFoundError(f"no API key with id {key_id!r}")
            key.revoked_at = key.revoked_at or utcnow()
            self.add_audit(s, actor=actor, action="key_revoke", object_type="api_key", object_id=key_id)

    def list_api_keys(self) -> list[ApiKey]:
        with self.session() as s:
            return list(s.scalars(select(ApiKey).order_by(ApiKey.id)))

    # -- people ---------------------------------------------------------------------
    def create_user(self, username: str, password: str | None, *, display_name: str | None = None,
                    role: str = "reviewer", team: str | None = None,
                    hidden_categories: Iterable[str] = (), actor: str = "system") -> int:
        """Create a named reviewer account. The password is stored as an argon2 hash.

        Returns:
            The new user's id.

        Raises:
            StoreError: unknown role or category, a short password, or a taken username.
        """
        if role not in USER_ROLES:
            raise StoreError(f"unknown role {role!r}; use one of {', '.join(USER_ROLES)}")
        hidden = sorted(set(hidden_categories))
        unknown = [c for c in hidden if c not in CATEGORY_KEYS]
        if unknown:
            raise StoreError(f"unknown categories {', '.join(unknown)}")
        if not username or len(username) > 100 or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise StoreError("username must be 1-100 letters, digits, '.', '-' or '_'")
        if password is not None and len(password) < 10:
            raise StoreError("password must be at least 10 characters")
        with self.session() as s, s.begin():
            if s.scalar(select(User.id).where(User.username == username)) is not None:
                raise StoreError(f"user {username!r} already exists")
            u = User(username=username, display_name=display_name or username,
                     password_hash=self._ph.hash(password) if password else None,
                     role=role, team=team, hidden_categories=hidden, disabled=False)
            s.add(u)
            s.flush()
            self.add_audit(s, actor=actor, action="user_create", object_type="user", object_id=u.id,
                           details={"username": username, "role": role, "team": team, "hidden": hidden})
            return u.id

    def set_user_disabled(self, username: str, disabled: bool = True, *, actor: str = "system") -> None:
        """Disable (or re-enable) an account; a disabled user's sessions stop working at once."""
        with self.session() as s, s.begin():
            u = s.scalar(select(User).where(User.username == username))
            if u is None:
                raise NotFoundError(f"no user {username!r}")
            u.disabled = disabled
            if disabled:
                s.execute(update(ReviewSession).where(ReviewSession.user_id == u.id,
                                                      ReviewSession.revoked_at.is_(None))
                          .values(revoked_at=utcnow()))
            self.add_audit(s, actor=actor, action="user_disable" if disabled else "user_enable",
                           object_type="user", object_id=u.id, details={"username": username})

    def set_password(self, username: str, password: str, *, actor: str = "system") -> None:
        if len(password) < 10:
            raise StoreError("password must be at least 10 characters")
        with self.session() as s, s.begin():
            u = s.scalar(select(User).where(User.username == username))
            if u is None:
                raise NotFoundError(f"no user {username!r}")
            u.password_hash = self._ph.hash(password)
            self.add_audit(s, actor=actor, action="user_password", object_type="user", object_id=u.id)

    def list_users(self) -> list[User]:
        with self.session() as s:
            return list(s.scalars(select(User).order_by(User.id)))

    def get_user(self, username: str) -> User:
        with self.session() as s:
            u = s.scalar(select(User).where(User.username == username))
            if u is None:
                raise NotFoundError(f"no user {username!r}")
            return u

    def authenticate(self, username: str, password: str) -> User | None:
        """The active user with this password, or None. Every attempt is audited."""
        from argon2.exceptions import InvalidHashError, VerificationError

        ph = self._ph
        with self.session() as s, s.begin():
            u = s.scalar(select(User).where(User.username == username))
            ok = False
            if u is None or not u.password_hash:
                # Spend the same time as a real check so timing does not reveal usernames.
                try:
                    ph.verify(_DUMMY_HASH, password)
                except (VerificationError, InvalidHashError):
                    pass
            else:
                try:
                    ok = ph.verify(u.password_hash, password)
                except (VerificationError, InvalidHashError):
                    ok = False
                if ok and ph.check_needs_rehash(u.password_hash):
                    u.password_hash = ph.hash(password)
            ok = ok and u is not None and not u.disabled
            self.add_audit(s, actor=f"user:{u.id}" if u else "anonymous",
                           action="login" if ok else "login_failed", object_type="user",
                           object_id=u.id if u else "-", details={"username": username[:100]})
            if not ok:
                return None
            s.flush()
            s.expunge(u)
            return u

    def create_session(self, user_id: int, *, hours: int = 12) -> tuple[str, str]:
        """Start a browser session. Returns ``(token, csrf_token)``; only the token's hash is stored."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        with self.session() as s, s.begin():
            s.add(ReviewSession(token_hash=self._hash_secret(token), user_id=user_id, csrf_token=csrf,
                                expires_at=utcnow() + timedelta(hours=hours)))
        return token, csrf

    def session_viewer(self, token: str, *, team_hidden: dict[str, list[str]] | None = None
                       ) -> tuple["Viewer", str] | None:
        """The signed-in user's ``(viewer, csrf_token)`` for a session token, or None when the
        session is unknown, expired or ended, or the user is disabled."""
        if not token:
            return None
        with self.session() as s:
            row = s.execute(select(ReviewSession, User).join(User, User.id == ReviewSession.user_id)
                            .where(ReviewSession.token_hash == self._hash_secret(token))).first()
            if row is None:
                return None
            sess, u = row
            if sess.revoked_at is not None or u.disabled or _aware(sess.expires_at) < utcnow():
                return None
            return Viewer.for_user(u, team_hidden=team_hidden), sess.csrf_token

    def end_session(self, token: str) -> None:
        with self.session() as s, s.begin():
            s.execute(update(ReviewSession).where(ReviewSession.token_hash == self._hash_secret(token))
                      .values(revoked_at=utcnow()))

    def viewer_for_user(self, username: str, *, team_hidden: dict[str, list[str]] | None = None) -> "Viewer":
        return Viewer.for_user(self.get_user(username), team_hidden=team_hidden)

    # -- the review queue ----------------------------------------------------------------
    def queue(self, viewer: "Viewer", *, category: str | None = None, level: str | None = None,
              team: str | None = None, case_id: str | None = None, since: datetime | None = None,
              until: datetime | None = None, states: Iterable[str] = rv.OPEN_STATES,
              limit: int = 200, now: datetime | None = None) -> rv.QueuePage:
        """Suggestions awaiting review that ``viewer`` may see: highest level, then newest, first.

        Hidden categories are left out in the query itself, so no page or client can show them.
        """
        now = now or utcnow()
        conds = [Suggestion.state.in_(list(states))]
        if viewer.hidden:
            conds.append(Suggestion.category.not_in(sorted(viewer.hidden)))
        if level:
            conds.append(Suggestion.level == level)
        if team:
            conds.append(Note.team == team)
        if case_id:
            conds.append(Note.case_id == case_id)
        if since:
            conds.append(Note.created_at >= since)
        if until:
            conds.append(Note.created_at < until)
        rank = case({"high": 3, "medium": 2, "low": 1}, value=Suggestion.level, else_=0)
        with self.session() as s:
            counts = dict(s.execute(select(Suggestion.category, func.count()).join(Note)
                                    .where(*conds).group_by(Suggestion.category)).all())
            q = select(Suggestion, Note).join(Note).where(*conds)
            if category:
                q = q.where(Suggestion.category == category)
            q = q.order_by(rank.desc(), Note.created_at.desc(), Suggestion.id.desc()).limit(limit)
            items = [rv.QueueItem(
                suggestion_id=sg.id, note_id=n.id, note_key=n.note_key, case_id=n.case_id, team=n.team,
                note_date=n.note_date, category=sg.category, level=sg.level, score=sg.score, state=sg.state,
                origin=sg.origin, version=sg.version, created_at=_aware(sg.created_at),
                waited=rv.waited(_aware(sg.created_at), now), evidence_count=len(sg.evidence or []),
            ) for sg, n in s.execute(q).all()]
            total = sum(counts.values()) if not category else counts.get(category, 0)
        return rv.QueuePage(items=items, counts=counts, total=total)

    # -- one note ---------------------------------------------------------------------------
    def note_view(self, note_id: int, viewer: "Viewer", *, audit: bool = True) -> rv.NoteView:
        """The note, its visible suggestions with their decisions, its suppressed evidence and
        the same case's other notes. Each call is audited as a view (no note text in details).

        Raises:
            NotFoundError: no such note, or nothing in it this viewer may see (the two are not
                told apart, so a hidden category does not leak).
        """
        with self.session() as s, s.begin():
            note = s.scalar(select(Note).where(Note.id == note_id).options(
                selectinload(Note.suggestions).selectinload(Suggestion.decisions).selectinload(Decision.user)))
            visible = [sg for sg in (note.suggestions if note else []) if viewer.can_see(sg.category)]
            if note is None or not visible:
                raise NotFoundError(f"no review item for note {note_id}")
            history: list[rv.CaseEntry] = []
            if note.case_id:
                others = s.scalars(select(Note).where(Note.case_id == note.case_id, Note.id != note.id)
                                   .options(selectinload(Note.suggestions).selectinload(Suggestion.decisions)
                                            .selectinload(Decision.user))
                                   .order_by(Note.created_at)).all()
                for o in others:
                    sv = [_suggestion_view(sg) for sg in o.suggestions if viewer.can_see(sg.category)]
                    if sv:
                        history.append(rv.CaseEntry(note_id=o.id, note_key=o.note_key, note_date=o.note_date,
                                                    when=rv.parse_when(o.note_date, _aware(o.created_at)),
                                                    text_held=o.text is not None, suggestions=sv))
            result = note.result or {}
            view = rv.NoteView(
                id=note.id, note_key=note.note_key, case_id=note.case_id, team=note.team,
                note_date=note.note_date, author_role=note.author_role, source=note.source,
                created_at=_aware(note.created_at), text=note.text,
                text_purged_at=_aware(note.text_purged_at) if note.text_purged_at else None,
                versions=result.get("versions"),
                suggestions=[_suggestion_view(sg) for sg in sorted(visible, key=_sg_order)],
                suppressed=[e for e in result.get("suppressed") or [] if viewer.can_see(e.get("category"))],
                case_history=history,
            )
            if audit:
                self.add_audit(s, actor=viewer.actor, action="view_note", object_type="note", object_id=note.id,
                               details={"note_key": note.note_key, "case_id": note.case_id,
                                        "suggestions": [sg.id for sg in visible]})
            return view

    # -- decisions --------------------------------------------------------------------------------
    def decide(self, suggestion_id: int, viewer: "Viewer", decision: rv.DecisionIn, *,
               second_review_high_reject: bool = False) -> rv.SuggestionView:
        """Apply a named reviewer's decision to one suggestion.

        Optimistic concurrency: the update only happens while the suggestion still has the
        version the reviewer saw (``decision.version``, or the one read here), so of two
        reviewers deciding at once exactly one wins; the other gets ConflictError naming the
        winner. The decision records who, when, the comment and the versions they saw.

        Raises:
            PermissionDenied: no named user (API keys read only), a hidden category, or the
                first reviewer signing off their own rejection.
            NotFoundError: no such suggestion.
            ConflictError: already decided (message names who), or a stale version.
            StoreError: the decision's fields do not fit its action.
        """
        if viewer.user_id is None:
            raise PermissionDenied("decisions need a named reviewer signed in; API keys may only read")
        rv.check_decision(decision)
        with self.session() as s:
            sg = s.scalar(select(Suggestion).where(Suggestion.id == suggestion_id)
                          .options(selectinload(Suggestion.decisions).selectinload(Decision.user),
                                   selectinload(Suggestion.note)))
            if sg is None or not viewer.can_see(sg.category):
                raise NotFoundError(f"no suggestion {suggestion_id}")
            if decision.new_category and not viewer.can_see(decision.new_category):
                raise PermissionDenied(f"you may not use category {decision.new_category!r}")
            last = sg.decisions[-1] if sg.decisions else None
            last_by = last.user.display_name if last else None
            first_reviewer = next((d.user_id for d in reversed(sg.decisions) if d.action == "reject"), None)
            new_state = rv.next_state(state=sg.state, action=decision.action, level=sg.level,
                                      second_review_high_reject=second_review_high_reject,
                                      user_id=viewer.user_id, first_reviewer_id=first_reviewer,
                                      agree=decision.agree, decided_by=last_by)
            seen = decision.version or sg.version
            if seen != sg.version:
                raise ConflictError(f"already decided by {last_by or 'someone else'}: the item changed "
                                    f"since you opened it (version {seen}, now {sg.version})")
            seen_info = {"lexicons": sg.lexicon_version, "model": sg.model_version, "version": seen,
                         "category": sg.category, "level": sg.level, "state": sg.state}
            note_id, case_id, category = sg.note_id, sg.note.case_id, sg.category
        now = utcnow()
        with self.session() as s, s.begin():
            # The conditional UPDATE is the first statement of the write transaction: it takes
            # the write lock (SQLite) or the row lock (PostgreSQL) and re-checks the version.
            res = s.execute(update(Suggestion)
                            .where(Suggestion.id == suggestion_id, Suggestion.version == seen)
                            .values(state=new_state, version=seen + 1,
                                    decided_at=now if new_state in rv.FINAL_STATES else None)
                            .execution_options(synchronize_session=False))
            if res.rowcount != 1:
                s.rollback()
                raise ConflictError(f"already decided by {self._last_decider(suggestion_id)}")
            s.add(Decision(suggestion_id=suggestion_id, user_id=viewer.user_id, action=decision.action,
                           reason=decision.reason if decision.action == "reject" else None,
                           comment=(decision.comment or None),
                           new_category=decision.new_category if decision.action == "recategorise" else None,
                           new_level=decision.new_level if decision.action == "recategorise" else None,
                           versions_seen=seen_info, created_at=now))
            self.add_audit(s, actor=viewer.actor, action="decide", object_type="suggestion",
                           object_id=suggestion_id,
                           details={"decision": decision.action, "state": new_state, "reason": decision.reason,
                                    "agree": decision.agree, "note_id": note_id, "case_id": case_id,
                                    "category": category, "new_category": decision.new_category,
                                    "new_level": decision.new_level, "version_seen": seen})
        return self.suggestion(suggestion_id, viewer)

    def _last_decider(self, suggestion_id: int) -> str:
        with self.session() as s:
            name = s.scalar(select(User.display_name).join(Decision, Decision.user_id == User.id)
                            .where(Decision.suggestion_id == suggestion_id)
                            .order_by(Decision.id.desc()).limit(1))
            return name or "someone else"

    def suggestion(self, suggestion_id: int, viewer: "Viewer") -> rv.SuggestionView:
        with self.session() as s:
            sg = s.scalar(select(Suggestion).where(Suggestion.id == suggestion_id)
                          .options(selectinload(Suggestion.decisions).selectinload(Decision.user)))
            if sg is None or not viewer.can_see(sg.category):
                raise NotFoundError(f"no suggestion {suggestion_id}")
            return _suggestion_view(sg)

    def add_concern(self, note_id: int, viewer: "Viewer", add: rv.AddConcernIn) -> rv.SuggestionView:
        """Record a concern the flagger missed, from a reviewer's selection in the note.

        The selection's offsets are checked against the note text on the server. The new
        suggestion is ``origin="reviewer"`` and confirmed by the person who added it; a
        second selection in the same category adds evidence to the same suggestion.

        Raises:
            PermissionDenied: no named user, or a category the viewer may not see.
            NotFoundError: no such note visible to the viewer.
            StoreError: unknown category, purged text, or offsets outside the note.
        """
        if viewer.user_id is None:
            raise PermissionDenied("decisions need a named reviewer signed in; API keys may only read")
        if add.category not in CATEGORY_KEYS:
            raise StoreError(f"unknown category {add.category!r}")
        if not viewer.can_see(add.category):
            raise PermissionDenied(f"you may not use category {add.category!r}")
        with self.session() as s, s.begin():
            note = s.scalar(select(Note).where(Note.id == note_id).options(selectinload(Note.suggestions)))
            if note is None or not any(viewer.can_see(sg.category) for sg in note.suggestions):
                raise NotFoundError(f"no review item for note {note_id}")
            if note.text is None:
                raise StoreError(f"note {note_id}: text was purged; nothing to select")
            rv.check_span(len(note.text), add.start, add.end)
            ev = {"start": add.start, "end": add.end, "text": note.text[add.start:add.end],
                  "category": add.category, "indicator": "reviewer", "source": "reviewer", "weight": 1.0,
                  "context": [], "suppressed": False}
            versions = (note.result or {}).get("versions") or {}
            sg = next((x for x in note.suggestions if x.origin == "reviewer" and x.category == add.category), None)
            if sg is None:
                sg = Suggestion(category=add.category, level=add.level, score=1.0, origin="reviewer",
                                state="confirmed", evidence=[ev],
                                explanation=Explanation(threshold=0.0, indicators=["reviewer"],
                                                        lexicon_version=versions.get("lexicons"))
                                .model_dump(mode="json"),
                                why=f"Added by {viewer.name}: a concern the flagger did not suggest.",
                                lexicon_version=versions.get("lexicons"), model_version=versions.get("model"),
                                decided_at=utcnow())
                note.suggestions.append(sg)
            else:
                sg.evidence = [*sg.evidence, ev]  # a new list, so the JSON change is saved
                sg.version += 1
            s.flush()
            s.add(Decision(suggestion_id=sg.id, user_id=viewer.user_id, action="add", comment=add.comment or None,
                           new_category=add.category, new_level=add.level,
                           versions_seen={"lexicons": versions.get("lexicons"), "model": versions.get("model")}))
            self.add_audit(s, actor=viewer.actor, action="add_concern", object_type="suggestion", object_id=sg.id,
                           details={"note_id": note.id, "case_id": note.case_id, "category": add.category,
                                    "level": add.level, "start": add.start, "end": add.end})
            sid = sg.id
        return self.suggestion(sid, viewer)

    # -- case timeline ---------------------------------------------------------------------------
    def case_timeline(self, case_id: str, viewer: "Viewer", *, audit: bool = True) -> list[rv.CaseEntry]:
        """Every note of one case with its visible suggestions and decisions, oldest first.

        Raises:
            NotFoundError: the case has nothing this viewer may see.
        """
        with self.session() as s, s.begin():
            notes = s.scalars(select(Note).where(Note.case_id == case_id)
                              .options(selectinload(Note.suggestions).selectinload(Suggestion.decisions)
                                       .selectinload(Decision.user))).all()
            out = []
            for n in notes:
                sv = [_suggestion_view(sg) for sg in sorted(n.suggestions, key=_sg_order)
                      if viewer.can_see(sg.category)]
                if sv:
                    out.append(rv.CaseEntry(note_id=n.id, note_key=n.note_key, note_date=n.note_date,
                                            when=rv.parse_when(n.note_date, _aware(n.created_at)),
                                            text_held=n.text is not None, suggestions=sv))
            if not out:
                raise NotFoundError(f"no review items for case {case_id!r}")
            out.sort(key=lambda e: (e.when, e.note_id))
            if audit:
                self.add_audit(s, actor=viewer.actor, action="view_case", object_type="case", object_id=case_id,
                               details={"case_id": case_id, "notes": [e.note_id for e in out]})
            return out

    def chronology(self, suggestion_id: int, viewer: "Viewer") -> str:
        """A draft chronology entry for a confirmed concern (plain text). Audited.

        Raises:
            NotFoundError: no such suggestion visible to the viewer.
            StoreError: the suggestion is not confirmed.
        """
        with self.session() as s, s.begin():
            sg = s.scalar(select(Suggestion).where(Suggestion.id == suggestion_id)
                          .options(selectinload(Suggestion.decisions).selectinload(Decision.user),
                                   selectinload(Suggestion.note)))
            if sg is None or not viewer.can_see(sg.category):
                raise NotFoundError(f"no suggestion {suggestion_id}")
            if sg.state not in ("confirmed", "recategorised"):
                raise StoreError(f"suggestion {suggestion_id} is {sg.state}; only confirmed concerns "
                                 "can be exported to a chronology")
            view = _suggestion_view(sg)
            d = next((d for d in reversed(view.decisions) if d.action in ("confirm", "recategorise", "add")), None)
            n = sg.note
            text = n.text
            evidence = [text[e["start"]:e["end"]] if text else "(note text purged)"
                        for e in sg.evidence if not e.get("suppressed")]
            self.add_audit(s, actor=viewer.actor, action="export_chronology", object_type="suggestion",
                           object_id=sg.id, details={"note_id": n.id, "case_id": n.case_id})
            return rv.chronology_entry(
                when=rv.parse_when(n.note_date, _aware(n.created_at)), note_key=n.note_key,
                category_name=CATEGORIES[view.effective_category].name if view.effective_category in CATEGORIES
                else view.effective_category,
                level=view.effective_level, evidence=evidence, decided_by=d.by if d else "?",
                decided_at=d.at if d else utcnow(), comment=d.comment if d else None)

    # -- retention -----------------------------------------------------------------------------------
    def purge(self, older_than: timedelta, *, actor: str = "system", now: datetime | None = None,
              dry_run: bool = False) -> list[int]:
        """Remove the text of notes whose every suggestion was decided more than ``older_than`` ago.

        The decision records stay; evidence keeps its offsets, categories and indicator ids,
        but every fragment of note text (evidence, context triggers, ``why``) is blanked.
        Each purged note is audited.

        Returns:
            The ids of the purged notes (or of those that would be, with ``dry_run``).
        """
        cutoff = (now or utcnow()) - older_than
        with self.session() as s, s.begin():
            notes = s.scalars(select(Note).where(Note.text.is_not(None))
                              .options(selectinload(Note.suggestions))).all()
            ids = []
            for n in notes:
                sgs = n.suggestions
                if not sgs or any(sg.state not in rv.FINAL_STATES or sg.decided_at is None for sg in sgs):
                    continue
                if max(_aware(sg.decided_at) for sg in sgs) >= cutoff:
                    continue
                ids.append(n.id)
                if dry_run:
                    continue
                n.text = None
                n.text_purged_at = now or utcnow()
                n.result = rv.scrub_result(n.result or {})
                for sg in sgs:
                    sg.evidence = [rv.scrub_evidence(e) for e in sg.evidence or []]
                    sg.why = ""
                self.add_audit(s, actor=actor, action="purge_text", object_type="note", object_id=n.id,
                               details={"case_id": n.case_id, "older_than_days": older_than.days})
            return ids

    # -- learning from decisions -----------------------------------------------------------------------
    def export_decisions(self) -> Iterator[dict[str, Any]]:
        """Decided notes whose text is still held, as labelled records in the corpus format:
        ``{"id", "text", "labels", "evidence": {label: [exact substrings]}}``.

        A note is exported once nothing in it awaits review. Labels are the confirmed (or
        recategorised, or reviewer-added) categories; a note whose suggestions were all
        rejected is exported with no labels, a useful negative example.
        """
        with self.session() as s:
            notes = s.scalars(select(Note).where(Note.text.is_not(None)).order_by(Note.id)
                              .options(selectinload(Note.suggestions).selectinload(Suggestion.decisions)
                                       .selectinload(Decision.user))).all()
            for n in notes:
                sgs = n.suggestions
                if not sgs or any(sg.state in rv.OPEN_STATES for sg in sgs):
                    continue
                evidence: dict[str, list[str]] = {}
                for sg in sgs:
                    if sg.state not in ("confirmed", "recategorised"):
                        continue
                    label = _suggestion_view(sg).effective_category
                    subs = evidence.setdefault(label, [])
                    for e in sg.evidence or []:
                        frag = n.text[e["start"]:e["end"]]
                        if not e.get("suppressed") and frag and frag not in subs:
                            subs.append(frag)
                yield {"id": n.note_key, "text": n.text, "labels": sorted(evidence), "evidence": evidence}

    def indicator_stats(self) -> dict[str, dict[str, int]]:
        """Per lexicon indicator, confirmations and rejection reasons (see review.indicator_reason_counts)."""
        rows = []
        with self.session() as s:
            sgs = s.scalars(select(Suggestion).where(Suggestion.origin == "flagger",
                                                     Suggestion.state.in_(list(rv.FINAL_STATES)))
                            .options(selectinload(Suggestion.decisions))).all()
            for sg in sgs:
                inds = list((sg.explanation or {}).get("indicators") or [])
                inds += [e.get("indicator") for e in sg.evidence or [] if e.get("indicator")]
                reason = next((d.reason for d in reversed(sg.decisions) if d.action == "reject"), None)
                rows.append((inds, sg.state, reason))
        return rv.indicator_reason_counts(rows)

    # -- audit export ----------------------------------------------------------------------------------
    def audit_events(self, *, user: str | None = None, case_id: str | None = None,
                     since: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Audit events, oldest first, for inspections and subject-access requests.

        Args:
            user: a username; only that person's events.
            case_id: only events about that case (details.case_id, or the case itself).
            since: only events at or after this time.

        Raises:
            NotFoundError: unknown username.
        """
        q = select(AuditEvent).order_by(AuditEvent.id)
        if user:
            q = q.where(AuditEvent.actor == f"user:{self.get_user(user).id}")
        if since:
            q = q.where(AuditEvent.at >= since)
        with self.session() as s:
            for ev in s.scalars(q).yield_per(500):
                details = ev.details or {}
                if case_id and not (details.get("case_id") == case_id
                                    or (ev.object_type == "case" and ev.object_id == case_id)):
                    continue
                yield {"id": ev.id, "at": _aware(ev.at).isoformat(), "actor": ev.actor, "action": ev.action,
                       "object_type": ev.object_type, "object_id": ev.object_id, "details": details}


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a signed-in person or an API key, and the categories they may not see."""

    actor: str                      # audit actor: "user:3" or "key:ab12cd"
    name: str                       # display name
    user_id: int | None             # None for API keys: they may read but not decide
    role: str
    hidden: frozenset[str] = frozenset()

    def can_see(self, category: str | None) -> bool:
        return category not in self.hidden

    @classmethod
    def for_user(cls, u: User, *, team_hidden: dict[str, list[str]] | None = None) -> "Viewer":
        hidden = set(u.hidden_categories or [])
        if team_hidden and u.team:
            hidden |= set(team_hidden.get(u.team, []))
        return cls(actor=f"user:{u.id}", name=u.display_name, user_id=u.id, role=u.role,
                   hidden=frozenset(hidden))

    @classmethod
    def for_key(cls, k: ApiKey) -> "Viewer":
        return cls(actor=f"key:{k.key_id}", name=f"API key {k.name}", user_id=None, role=k.role)


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()


# A hash of a random string, verified against when a username is unknown (timing).
_DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$hjNE8QQPEWoYsAbSUjKYzQ$hgbyN2DoaZecartxaHlM1D6zrrQh05E6WshQ0Lv8H9Q"


def _aware(d: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone=True columns; they were written in UTC.
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def _sg_order(sg: Suggestion) -> tuple:
    return (-rv.LEVEL_RANK.get(sg.level, 0), sg.id)


def _suggestion_view(sg: Suggestion) -> rv.SuggestionView:
    decisions = [rv.DecisionView(id=d.id, action=d.action, reason=d.reason, comment=d.comment,
                                 new_category=d.new_category, new_level=d.new_level, by=d.user.display_name,
                                 by_username=d.user.username, by_user_id=d.user_id, at=_aware(d.created_at),
                                 versions_seen=d.versions_seen or {}) for d in sg.decisions]
    recat = next((d for d in reversed(decisions) if d.action == "recategorise"), None)
    return rv.SuggestionView(
        id=sg.id, note_id=sg.note_id, category=sg.category, level=sg.level,
        effective_category=(recat.new_category if recat and recat.new_category else sg.category),
        effective_level=(recat.new_level if recat and recat.new_level else sg.level),
        score=sg.score, origin=sg.origin, state=sg.state, version=sg.version, evidence=sg.evidence or [],
        explanation=sg.explanation or {}, why=sg.why or "", lexicon_version=sg.lexicon_version,
        model_version=sg.model_version, created_at=_aware(sg.created_at),
        decided_at=_aware(sg.decided_at) if sg.decided_at else None,
        decided_by=decisions[-1].by if decisions else None, decisions=decisions)


def _opt_str(v: Any) -> str | None:
    return None if v is None or v == "" else str(v)
