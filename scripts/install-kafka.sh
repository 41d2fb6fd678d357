#!/usr/bin/env bash
# Install the Apache Kafka broker the Kafka subscription tests run against (single-node KRaft, see
# tests/kafka/broker.py): its jars from Maven Central into .kafka/lib/, through a small pom written here and
# `mvn dependency:copy-dependencies`. Needs a JDK 17+ (`java`) and Maven (`mvn`).
# Idempotent: a second run finds the stamp of the same versions and fetches nothing. KAFKA_MAVEN_OPTS adds
# Maven flags (e.g. -Dmaven.repo.local=DIR). Cold: about 12 s and 125 MB (54 MB in .kafka/, 70 MB in ~/.m2).
set -euo pipefail
cd "$(dirname "$0")/.."
KAFKA_VERSION=4.4.0
SCALA_VERSION=2.13
# Kafka 4.4 resolves slf4j-api 1.7.36; the binding must be of the same line or the broker logs nothing.
SLF4J_VERSION=1.7.36
STAMP="kafka_${SCALA_VERSION}-${KAFKA_VERSION} kafka-tools-${KAFKA_VERSION} slf4j-simple-${SLF4J_VERSION}"
if [ "$(cat .kafka/lib/.installed 2>/dev/null)" = "$STAMP" ]; then
    exit 0
fi
for tool in java mvn; do
    command -v "$tool" >/dev/null 2>&1 || { echo "install-kafka.sh: needs $tool (a JDK 17+ and Maven) on PATH" >&2; exit 1; }
done
mkdir -p .kafka
cat > .kafka/pom.xml <<POM
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by scripts/install-kafka.sh: only its dependency list matters, nothing is built. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.durably.test</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_${SCALA_VERSION}</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-simple</artifactId>
      <version>${SLF4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
POM
rm -rf .kafka/lib.tmp
mvn -q -B -f .kafka/pom.xml ${KAFKA_MAVEN_OPTS:-} dependency:copy-dependencies \
    -DoutputDirectory="$PWD/.kafka/lib.tmp" -DincludeScope=runtime
# Swap in whole: an interrupted fetch never leaves a half-filled lib/ that looks installed.
rm -rf .kafka/lib
mv .kafka/lib.tmp .kafka/lib
echo "$STAMP" > .kafka/lib/.installed
