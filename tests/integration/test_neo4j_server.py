"""The Neo4j server scripts/stack.sh starts (neo4j-harness behind scripts/java/neo4j/
Neo4jLauncher.java) answers the official Python driver over Bolt as user neo4j with the
generated password, refuses a wrong one, and keeps what was written across a restart."""
import uuid

import neo4j
import pytest
import requests

from conftest import stack

USER = "neo4j"


def password(password_file):
    return password_file.read_text().strip()


def test_bolt_answers_an_authenticated_query_on_loopback(neo4j_server):
    bolt, _http, password_file = neo4j_server
    with neo4j.GraphDatabase.driver(bolt, auth=(USER, password(password_file))) as driver:
        records, _summary, _keys = driver.execute_query(
            "CALL dbms.components() YIELD name, versions, edition "
            "RETURN name, versions[0] AS version, edition, 1 + 1 AS two", database_="neo4j")
        info = driver.get_server_info()
    assert records[0]["two"] == 2
    assert (records[0]["version"], records[0]["edition"]) == ("5.26.0", "community")
    assert info.address.host == "127.0.0.1"


def test_a_wrong_password_is_refused_over_bolt_and_http(neo4j_server):
    bolt, http, password_file = neo4j_server
    with neo4j.GraphDatabase.driver(bolt, auth=(USER, "not-the-password")) as driver:
        with pytest.raises(neo4j.exceptions.AuthError):
            driver.verify_connectivity()
    r = requests.post(f"{http}/db/neo4j/tx/commit", auth=(USER, "not-the-password"), timeout=10,
                      json={"statements": [{"statement": "RETURN 1"}]})
    assert r.status_code == 401
    # Neo4j locks a user for 5 s after 3 failed attempts; two are far from that, and the
    # right password still works at once.
    assert requests.post(f"{http}/db/neo4j/tx/commit", auth=(USER, password(password_file)),
                         timeout=10, json={"statements": [{"statement": "RETURN 1"}]}
                         ).json()["errors"] == []


def test_a_node_written_survives_a_restart_of_the_server(neo4j_server):
    bolt, _http, password_file = neo4j_server
    node_id = str(uuid.uuid4())
    with neo4j.GraphDatabase.driver(bolt, auth=(USER, password(password_file))) as driver:
        driver.execute_query("CREATE (:RestartProbe {id: $id, at: datetime()})", id=node_id,
                             database_="neo4j")
    stack("restart", "neo4j")
    with neo4j.GraphDatabase.driver(bolt, auth=(USER, password(password_file))) as driver:
        records, _, _ = driver.execute_query(
            "MATCH (n:RestartProbe {id: $id}) RETURN count(n) AS n, n.at IS NOT NULL AS dated",
            id=node_id, database_="neo4j")
        driver.execute_query("MATCH (n:RestartProbe {id: $id}) DELETE n", id=node_id,
                             database_="neo4j")
    assert [(r["n"], r["dated"]) for r in records] == [(1, True)]
