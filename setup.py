import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "pushy" / "__init__.py").read_text(), re.M
).group(1)

setup(
    name="django-pushy",
    version=VERSION,
    description="Push Django model changes to browsers over WebSockets.",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["pushy", "pushy.*"]),
    include_package_data=True,
    zip_safe=False,
    python_requires=">=3.10",
    install_requires=[
        "Django>=4.2",
        "gevent>=23.9",
        "redis>=5.0",
        # The gateway's title in ps/top (docs/decisions.md, "Process titles").
        "setproctitle>=1.3",
    ],
    # psycopg 3, for manage.py pushy_capture (PostgreSQL change capture).
    extras_require={"postgres": ["psycopg[binary]>=3.2"]},
    entry_points={"pytest11": ["pushy = pushy.testing"]},
    classifiers=[
        "Framework :: Django",
        "Framework :: Django :: 4.2",
        "Framework :: Django :: 5.2",
        "License :: OSI Approved :: MIT License",
        "Programming Language :: Python :: 3",
        "Programming Language :: JavaScript",
        "Topic :: Internet :: WWW/HTTP",
    ],
)
