"""SQLAlchemy 2 (over psycopg 3) against each URL given (Mako and
PostgreSQL 15 alike; run by scripts/psycopg): create_all with a foreign key
and an index, an ORM round trip, begin_nested (a savepoint), and the
inspector's has_table, get_table_names and get_columns (they read
pg_catalog). Not yet: get_pk_constraint, get_foreign_keys, get_indexes
(their queries use set-returning functions in the select list and
array_agg). Both servers must give the same answers."""


from drivers import same_everywhere
from sqlalchemy import ForeignKey, String, create_engine, inspect, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "drv_sa_user"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(30))


class Addr(Base):
    __tablename__ = "drv_sa_addr"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("drv_sa_user.id"))
    email: Mapped[str] = mapped_column(String(50), index=True)


def answers(url):
    out = []
    engine = create_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add_all([User(name="a"), User(name="b")])
        s.commit()
        s.add(Addr(user_id=1, email="a@example.com"))
        s.commit()
        out.append([u.name for u in s.scalars(select(User).order_by(User.id))])
        try:
            with s.begin_nested():
                s.add(User(id=1, name="duplicate"))
        except Exception as e:  # the savepoint is rolled back
            out.append(type(e).__name__)
        s.add(User(name="c"))
        s.commit()
        out.append(s.scalar(select(User.name).where(User.name == "c")))
    ins = inspect(engine)
    out.append(ins.has_table("drv_sa_user"))
    out.append(ins.has_table("drv_sa_nope"))
    out.append(sorted(t for t in ins.get_table_names() if t.startswith("drv_sa_")))
    out.append(
        [(c["name"], str(c["type"]), c["nullable"]) for c in ins.get_columns("drv_sa_addr")]
    )
    Base.metadata.drop_all(engine)
    engine.dispose()
    return out


def main():
    same_everywhere(
        answers,
        lambda r: r[1] == "IntegrityError",
        "SQLAlchemy create_all, ORM, begin_nested, inspector: same on every server",
    )


if __name__ == "__main__":
    main()
