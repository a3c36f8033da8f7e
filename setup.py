import os

from setuptools import find_packages, setup

HERE = os.path.abspath(os.path.dirname(__file__))


def read(*parts):
    with open(os.path.join(HERE, *parts), encoding="utf-8") as f:
        return f.read()


def version():
    namespace = {}
    exec(read("greenworks", "_version.py"), namespace)
    return namespace["__version__"]


# `make docs`: Sphinx with the furo theme (docs/conf.py).
DOCS_REQUIRES = ["sphinx>=7.2", "furo>=2024.1"]
# `make dist`: build the sdist and wheel (pyproject.toml) and check them with twine.
DIST_REQUIRES = ["build>=1.0", "twine>=5.0"]

TEST_REQUIRES = [
    "pytest>=7",
    "mock>=4",
    "hypothesis>=6.50",
    "redis>=4.5",
    "gunicorn>=21.2",
    "prometheus_client>=0.16",
    "croniter>=1.3",  # only as the oracle of tests/test_schedules.py
    # `make typecheck`: mypy --strict on greenworks/ (mypy.ini); 2.4 is the first that passes clean.
    "mypy>=2.4",
    # tests/test_docs.py builds docs/ and screenshots it; tests/test_packaging.py builds the wheel.
    *DOCS_REQUIRES,
    *DIST_REQUIRES,
]

setup(
    name="greenworks",
    version=version(),
    description=(
        "A green-thread runtime for gevent applications: elastic greenlet pools, "
        "reconciled workers, supervised tasks, periodic jobs once per cluster."
    ),
    long_description=read("README.rst"),
    long_description_content_type="text/x-rst",
    license="MIT",
    packages=find_packages(include=["greenworks", "greenworks.*"]),
    # PEP 561: the package ships its annotations; type checkers read them.
    package_data={"greenworks": ["py.typed"]},
    python_requires=">=3.10",
    install_requires=[
        "gevent>=22.10.2",
        "greenlet>=2.0.2",
        "zope.interface>=5.5",
        'exceptiongroup>=1.1; python_version < "3.11"',
    ],
    extras_require={
        "test": TEST_REQUIRES,
        "redis": ["redis>=4.5"],
        # Cron is our own now; the extra stays so `pip install greenworks[cron]` keeps working.
        "cron": [],
        "prometheus": ["prometheus_client>=0.16"],
        # Only for `make bench`: the peers it compares with (rq: bench_streams; APScheduler 3:
        # bench_jobs; futurist's green executor, which needs eventlet: bench_executor) and the
        # charts of the scale curves (matplotlib). Each is optional there: missing, it says so.
        "bench": [
            "rq>=1.16",
            "redis>=4.5",
            "apscheduler>=3.10,<4",
            "futurist>=3",
            "eventlet>=0.33",
            "matplotlib>=3.5",
        ],
        "docs": DOCS_REQUIRES,
        "dist": DIST_REQUIRES,
        "dev": [*TEST_REQUIRES, "ruff>=0.4", "tox>=4"],
    },
    entry_points={"console_scripts": ["greenworks = greenworks.cli:main"]},
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Framework :: gevent",
        "Intended Audience :: Developers",
        "Operating System :: POSIX",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: Software Development :: Libraries",
        "Typing :: Typed",
    ],
    # No project_urls: the project has no public home, documentation site or tracker yet, and a
    # URL that leads nowhere is worse than none. Add Homepage/Documentation/Changelog with them.
    zip_safe=False,
)
