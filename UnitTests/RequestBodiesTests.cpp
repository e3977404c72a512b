#include "Sync/RequestBodies.h"

#include "Common/Exception.h"
#include "Common/Json.h"

#include "TestSupport.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

using namespace AzureDicom;
using AzureDicom::Testing::CatchException;


namespace
{
const int DEFAULT_PRIORITY = 7;
const char SNAPSHOT_ID[] = "42";


// Parses a JSON text that the test itself wrote.
Json::Value ParseBody(const std::string& text)
{
  return ParseRequestBody(text.data(), text.size());
}


// Checks that the call throws Exception(BadRequest) whose message contains every fragment.
void ExpectBadRequest(const std::function<void()>& call, const std::vector<std::string>& fragments)
{
  const Exception e = CatchException(call);
  const std::string message = e.what();

  EXPECT_EQ(ErrorCode::BadRequest, e.GetCode()) << message;
  EXPECT_EQ(400, e.GetHttpStatus()) << message;
  for (const std::string& fragment : fragments)
  {
    EXPECT_NE(std::string::npos, message.find(fragment))
        << "\"" << fragment << "\" is missing from: " << message;
  }
}
}  // namespace


TEST(ParseRequestBodyTest, EmptyBodyIsEmptyObject)
{
  const Json::Value body = ParseRequestBody(nullptr, 0);

  EXPECT_TRUE(body.isObject());
  EXPECT_TRUE(body.empty());
}


TEST(ParseRequestBodyTest, ObjectIsParsed)
{
  const Json::Value body = ParseBody("{\"Resources\": [\"a\", \"b\"], \"Priority\": 3}");

  ASSERT_TRUE(body.isObject());
  EXPECT_EQ(2u, body["Resources"].size());
  EXPECT_EQ(3, body["Priority"].asInt());
}


TEST(ParseRequestBodyTest, OnlyGivenBytesAreParsed)
{
  const std::string text = "{\"Label\": \"x\"}GARBAGE";
  const Json::Value body = ParseRequestBody(text.data(), text.size() - 7);

  EXPECT_EQ("x", body["Label"].asString());
}


TEST(ParseRequestBodyTest, InvalidJsonRejected)
{
  for (const std::string text : {"{", "{\"a\": }", "not json", "{'a': 1}", "[1,,2]"})
  {
    SCOPED_TRACE(text);
    ExpectBadRequest([&] { ParseBody(text); }, {"not valid JSON"});
  }
}


TEST(ParseRequestBodyTest, NonObjectRejected)
{
  for (const std::string text : {"[]", "[{\"All\": true}]", "\"All\"", "42", "true", "null"})
  {
    SCOPED_TRACE(text);
    ExpectBadRequest([&] { ParseBody(text); }, {"must be a JSON object"});
  }
}


TEST(ParseRequestBodyTest, DuplicateKeyRejected)
{
  ExpectBadRequest([] { ParseBody("{\"DryRun\": true, \"DryRun\": false}"); },
                   {"not valid JSON", "DryRun"});
}


TEST(ParseRequestBodyTest, TrailingTextRejected)
{
  ExpectBadRequest([] { ParseBody("{\"All\": true} {\"All\": true}"); }, {"not valid JSON"});
  ExpectBadRequest([] { ParseBody("{} x"); }, {"not valid JSON"});
}


// Returns {"Resources": [[...]]} with depth nested arrays.
std::string MakeNestedBody(int depth)
{
  return "{\"Resources\": " + std::string(depth, '[') + std::string(depth, ']') + "}";
}


TEST(ParseRequestBodyTest, NestingAtLimitParsed)
{
  const Json::Value body = ParseBody(MakeNestedBody(MAX_JSON_NESTING - 1));

  EXPECT_TRUE(body["Resources"].isArray());
}


TEST(ParseRequestBodyTest, DeepNestingRejected)
{
  // JsonCpp's own limit is 1000 levels, and past it, it throws instead of returning false.
  for (const int depth : {MAX_JSON_NESTING + 1, 500, 5000})
  {
    ExpectBadRequest([depth] { ParseBody(MakeNestedBody(depth)); },
                     {"not valid JSON", "nests more than " + std::to_string(MAX_JSON_NESTING)});
  }
}


TEST(CheckKeysTest, AllowedKeysPass)
{
  const Json::Value body = ParseBody("{\"A\": 1, \"B\": 2}");

  EXPECT_NO_THROW(CheckKeys(body, {"A", "B", "C"}));
  EXPECT_NO_THROW(CheckKeys(Json::Value(Json::objectValue), {}));
}


TEST(CheckKeysTest, UnknownKeyListsAllowed)
{
  const Json::Value body = ParseBody("{\"Resources\": [\"a\"], \"Prio\": 1}");

  ExpectBadRequest(
      [&] {
        CheckKeys(body, {"Resources", "All", "Priority"});
      },
      {"unknown key \"Prio\"", "\"All\", \"Priority\", \"Resources\""});
}


TEST(CheckKeysTest, NoKeysAllowedSaysEmpty)
{
  const Json::Value body = ParseBody("{\"Reason\": \"x\"}");

  ExpectBadRequest([&] { CheckKeys(body, {}); },
                   {"unknown key \"Reason\"", "expected an empty object or no body"});
}


TEST(CheckKeysTest, KeysAreCaseSensitive)
{
  const Json::Value body = ParseBody("{\"resources\": [\"a\"]}");

  ExpectBadRequest([&] { CheckKeys(body, {"Resources"}); }, {"\"resources\"", "\"Resources\""});
}


TEST(ReadResourceIdsTest, SingleStringIsOneId)
{
  const std::vector<std::string> ids = ReadResourceIds(ParseBody("{\"Resources\": \"abc\"}"));

  ASSERT_EQ(1u, ids.size());
  EXPECT_EQ("abc", ids[0]);
}


TEST(ReadResourceIdsTest, ArrayKeepsOrder)
{
  const std::vector<std::string> ids =
      ReadResourceIds(ParseBody("{\"Resources\": [\"b\", \"1.2.840.10008\", \"a\"]}"));

  ASSERT_EQ(3u, ids.size());
  EXPECT_EQ("b", ids[0]);
  EXPECT_EQ("1.2.840.10008", ids[1]);
  EXPECT_EQ("a", ids[2]);
}


TEST(ReadResourceIdsTest, EmptyArrayRejected)
{
  ExpectBadRequest([] { ReadResourceIds(ParseBody("{\"Resources\": []}")); },
                   {"\"Resources\"", "non-empty array"});
}


TEST(ReadResourceIdsTest, MissingOrWrongTypeRejected)
{
  for (const std::string text : {"{}", "{\"Resources\": 3}", "{\"Resources\": null}",
                                 "{\"Resources\": {\"ID\": \"a\"}}", "{\"Resources\": true}"})
  {
    SCOPED_TRACE(text);
    ExpectBadRequest([&] { ReadResourceIds(ParseBody(text)); }, {"\"Resources\""});
  }
}


TEST(ReadResourceIdsTest, EmptyStringRejected)
{
  ExpectBadRequest([] { ReadResourceIds(ParseBody("{\"Resources\": \"\"}")); },
                   {"\"Resources\" must be a non-empty string"});
}


TEST(ReadResourceIdsTest, BadElementNamedByIndex)
{
  ExpectBadRequest([] { ReadResourceIds(ParseBody("{\"Resources\": [\"a\", 5]}")); },
                   {"\"Resources\"[1]", "non-empty string"});
  ExpectBadRequest([] { ReadResourceIds(ParseBody("{\"Resources\": [\"a\", \"b\", \"\"]}")); },
                   {"\"Resources\"[2]"});
  ExpectBadRequest([] { ReadResourceIds(ParseBody("{\"Resources\": [[\"a\"]]}")); },
                   {"\"Resources\"[0]"});
}


TEST(ParseSyncRequestTest, ResourcesWithDefaultPriority)
{
  const SyncRequest request =
      ParseSyncRequest(ParseBody("{\"Resources\": [\"a\", \"b\"]}"), DEFAULT_PRIORITY);

  EXPECT_FALSE(request.all);
  ASSERT_EQ(2u, request.resources.size());
  EXPECT_EQ("a", request.resources[0]);
  EXPECT_EQ("b", request.resources[1]);
  EXPECT_EQ(DEFAULT_PRIORITY, request.priority);
}


TEST(ParseSyncRequestTest, SingleResourceString)
{
  const SyncRequest request =
      ParseSyncRequest(ParseBody("{\"Resources\": \"study-id\"}"), DEFAULT_PRIORITY);

  ASSERT_EQ(1u, request.resources.size());
  EXPECT_EQ("study-id", request.resources[0]);
}


TEST(ParseSyncRequestTest, AllWithPriority)
{
  const SyncRequest request =
      ParseSyncRequest(ParseBody("{\"All\": true, \"Priority\": -3}"), DEFAULT_PRIORITY);

  EXPECT_TRUE(request.all);
  EXPECT_TRUE(request.resources.empty());
  EXPECT_EQ(-3, request.priority);
}


TEST(DescribeJsonValueTest, ShortForms)
{
  EXPECT_EQ("\"yes\"", DescribeJsonValue(Json::Value("yes")));
  EXPECT_EQ("\"" + std::string(MAX_DESCRIBED_CHARACTERS, 'x') + "...\"",
            DescribeJsonValue(Json::Value(std::string(MAX_DESCRIBED_CHARACTERS + 1, 'x'))));
  // "é" is two bytes, so a cut after MAX_DESCRIBED_CHARACTERS bytes would split the last one.
  std::string accented = "x";
  for (size_t i = 0; i < MAX_DESCRIBED_CHARACTERS / 2; i++)
  {
    accented += "\xc3\xa9";
  }
  EXPECT_EQ("\"" + accented.substr(0, MAX_DESCRIBED_CHARACTERS - 1) + "...\"",
            DescribeJsonValue(Json::Value(accented)));
  EXPECT_EQ("5", DescribeJsonValue(Json::Value(5)));
  EXPECT_EQ("1e+20", DescribeJsonValue(ParseBody("{\"A\": 99999999999999999999}")["A"]));
  EXPECT_EQ("false", DescribeJsonValue(Json::Value(false)));
  EXPECT_EQ("null", DescribeJsonValue(Json::Value()));
  EXPECT_EQ("(an array)", DescribeJsonValue(Json::Value(Json::arrayValue)));
  EXPECT_EQ("(an object)", DescribeJsonValue(Json::Value(Json::objectValue)));
}


TEST(RequestBodiesTest, MessagesShowInvalidValue)
{
  ExpectBadRequest([] { ParseSyncRequest(ParseBody("{\"All\": \"yes\"}"), 0); },
                   {"\"All\"", "not \"yes\""});
  ExpectBadRequest(
      []
      {
        ParseSyncRequest(
            ParseBody("{\"Resources\": [\"a\"], \"Priority\": 99999999999999999999}"), 0);
      },
      {"\"Priority\"", "-2147483648 to 2147483647", "not 1e+20"});
  ExpectBadRequest([] { ParseRetryRequest(ParseBody("{\"State\": \"Done\"}")); },
                   {"invalid \"State\" \"Done\""});
  ExpectBadRequest([] { ParseSnapshotLabel(ParseBody("{\"Label\": 5}"), 200); },
                   {"\"Label\"", "not 5"});
  ExpectBadRequest([] { ParseRollbackRequest(ParseBody("{\"DryRun\": \"false\"}"), "1"); },
                   {"\"DryRun\"", "not \"false\""});
  ExpectBadRequest([] { ParseRollbackRequest(ParseBody("{\"Confirm\": 1}"), "1"); },
                   {"\"Confirm\"", "not 1"});
}


TEST(ParseSyncRequestTest, NeitherOrBothRejected)
{
  ExpectBadRequest([] { ParseSyncRequest(ParseBody("{}"), DEFAULT_PRIORITY); },
                   {"\"Resources\"", "\"All\""});
  ExpectBadRequest([]
                   { ParseSyncRequest(ParseBody("{\"All\": true, \"Resources\": [\"a\"]}"), 0); },
                   {"\"Resources\"", "\"All\""});
  ExpectBadRequest([] { ParseSyncRequest(ParseBody("{\"Priority\": 1}"), DEFAULT_PRIORITY); },
                   {"\"Resources\"", "\"All\""});
}


TEST(ParseSyncRequestTest, AllMustBeTrue)
{
  for (const std::string text :
       {"{\"All\": false}", "{\"All\": \"true\"}", "{\"All\": 1}", "{\"All\": null}"})
  {
    SCOPED_TRACE(text);
    ExpectBadRequest([&] { ParseSyncRequest(ParseBody(text), DEFAULT_PRIORITY); },
                     {"\"All\" must be true"});
  }
}


TEST(ParseSyncRequestTest, PriorityMustBeInteger)
{
  for (const std::string text :
       {"{\"All\": true, \"Priority\": \"high\"}", "{\"All\": true, \"Priority\": 1.5}",
        "{\"All\": true, \"Priority\": true}", "{\"All\": true, \"Priority\": 4294967296}"})
  {
    SCOPED_TRACE(text);
    ExpectBadRequest([&] { ParseSyncRequest(ParseBody(text), DEFAULT_PRIORITY); },
                     {"\"Priority\" must be an integer"});
  }
}


TEST(ParseSyncRequestTest, UnknownKeyRejected)
{
  ExpectBadRequest([] { ParseSyncRequest(ParseBody("{\"All\": true, \"Force\": true}"), 0); },
                   {"\"Force\"", "\"All\", \"Priority\", \"Resources\""});
}


TEST(ParseSyncRequestTest, BadResourceNamedByIndex)
{
  ExpectBadRequest(
      [] { ParseSyncRequest(ParseBody("{\"Resources\": [\"a\", {}]}"), DEFAULT_PRIORITY); },
      {"\"Resources\"[1]"});
}


TEST(ParseRetryRequestTest, EachRetryableState)
{
  const std::vector<std::pair<std::string, ItemState>> cases = {
      {"Failed", ItemState::Failed},
      {"Skipped", ItemState::Skipped},
      {"RolledBack", ItemState::RolledBack}};

  for (const auto& entry : cases)
  {
    SCOPED_TRACE(entry.first);
    const RetryRequest request =
        ParseRetryRequest(ParseBody("{\"State\": \"" + entry.first + "\"}"));
    EXPECT_TRUE(request.byState);
    EXPECT_EQ(entry.second, request.state);
    EXPECT_TRUE(request.resources.empty());
  }
}


TEST(ParseRetryRequestTest, OtherStatesRejected)
{
  for (const std::string text :
       {"{\"State\": \"Pending\"}", "{\"State\": \"Mirrored\"}", "{\"State\": \"Sending\"}",
        "{\"State\": \"AlreadyPresent\"}", "{\"State\": \"failed\"}", "{\"State\": \"\"}",
        "{\"State\": 4}", "{\"State\": [\"Failed\"]}"})
  {
    SCOPED_TRACE(text);
    ExpectBadRequest([&] { ParseRetryRequest(ParseBody(text)); },
                     {"invalid \"State\"", "\"Failed\", \"Skipped\" or \"RolledBack\""});
  }
}


TEST(ParseRetryRequestTest, Resources)
{
  const RetryRequest request = ParseRetryRequest(ParseBody("{\"Resources\": [\"x\", \"y\"]}"));

  EXPECT_FALSE(request.byState);
  ASSERT_EQ(2u, request.resources.size());
  EXPECT_EQ("x", request.resources[0]);
  EXPECT_EQ("y", request.resources[1]);
}


TEST(ParseRetryRequestTest, NeitherOrBothRejected)
{
  ExpectBadRequest([] { ParseRetryRequest(ParseBody("{}")); }, {"\"State\"", "\"Resources\""});
  ExpectBadRequest(
      [] { ParseRetryRequest(ParseBody("{\"State\": \"Failed\", \"Resources\": [\"a\"]}")); },
      {"\"State\"", "\"Resources\""});
}


TEST(ParseRetryRequestTest, UnknownKeyRejected)
{
  ExpectBadRequest([] { ParseRetryRequest(ParseBody("{\"State\": \"Failed\", \"All\": true}")); },
                   {"\"All\"", "\"Resources\", \"State\""});
}


TEST(ParseRetryRequestTest, BadResourceNamedByIndex)
{
  ExpectBadRequest([] { ParseRetryRequest(ParseBody("{\"Resources\": [null]}")); },
                   {"\"Resources\"[0]"});
  ExpectBadRequest([] { ParseRetryRequest(ParseBody("{\"Resources\": []}")); }, {"\"Resources\""});
}


TEST(ParseSnapshotLabelTest, MissingLabelIsEmpty)
{
  EXPECT_EQ("", ParseSnapshotLabel(ParseBody("{}"), 10));
}


TEST(ParseSnapshotLabelTest, LabelUpToLimit)
{
  EXPECT_EQ("before upgrade", ParseSnapshotLabel(ParseBody("{\"Label\": \"before upgrade\"}"), 14));
  EXPECT_EQ("", ParseSnapshotLabel(ParseBody("{\"Label\": \"\"}"), 14));
}


TEST(ParseSnapshotLabelTest, LongLabelRejected)
{
  ExpectBadRequest([] { ParseSnapshotLabel(ParseBody("{\"Label\": \"before upgrade\"}"), 13); },
                   {"\"Label\"", "at most 13 characters"});
}


TEST(ParseSnapshotLabelTest, NonStringRejected)
{
  for (const std::string text :
       {"{\"Label\": 3}", "{\"Label\": null}", "{\"Label\": [\"a\"]}", "{\"Label\": true}"})
  {
    SCOPED_TRACE(text);
    ExpectBadRequest([&] { ParseSnapshotLabel(ParseBody(text), 200); },
                     {"\"Label\" must be a string"});
  }
}


TEST(ParseSnapshotLabelTest, UnknownKeyRejected)
{
  ExpectBadRequest([] { ParseSnapshotLabel(ParseBody("{\"Name\": \"x\"}"), 200); },
                   {"unknown key \"Name\"", "\"Label\""});
}


TEST(ParseRollbackRequestTest, EmptyBodyIsDryRun)
{
  const RollbackRequest request = ParseRollbackRequest(ParseBody(""), SNAPSHOT_ID);

  EXPECT_TRUE(request.dryRun);
  EXPECT_EQ("", request.confirm);
  EXPECT_TRUE(request.deleteFromService);
}


TEST(ParseRollbackRequestTest, DryRunNeedsNoConfirm)
{
  const RollbackRequest request = ParseRollbackRequest(
      ParseBody("{\"DryRun\": true, \"DeleteFromService\": false}"), SNAPSHOT_ID);

  EXPECT_TRUE(request.dryRun);
  EXPECT_FALSE(request.deleteFromService);
}


TEST(ParseRollbackRequestTest, ConfirmedRealRun)
{
  const RollbackRequest request =
      ParseRollbackRequest(ParseBody("{\"DryRun\": false, \"Confirm\": \"42\"}"), SNAPSHOT_ID);

  EXPECT_FALSE(request.dryRun);
  EXPECT_EQ("42", request.confirm);
  EXPECT_TRUE(request.deleteFromService);
}


TEST(ParseRollbackRequestTest, RealRunWithoutConfirmRejected)
{
  ExpectBadRequest([] { ParseRollbackRequest(ParseBody("{\"DryRun\": false}"), SNAPSHOT_ID); },
                   {"\"Confirm\"", "\"42\"", "Nothing was changed"});
}


TEST(ParseRollbackRequestTest, RealRunWithWrongConfirmRejected)
{
  for (const std::string confirm : {"41", "", " 42", "420"})
  {
    SCOPED_TRACE(confirm);
    ExpectBadRequest(
        [&]
        {
          ParseRollbackRequest(ParseBody("{\"DryRun\": false, \"Confirm\": \"" + confirm + "\"}"),
                               SNAPSHOT_ID);
        },
        {"\"Confirm\" must be \"42\""});
  }
}


TEST(ParseRollbackRequestTest, NumericConfirmRejected)
{
  ExpectBadRequest(
      [] { ParseRollbackRequest(ParseBody("{\"DryRun\": false, \"Confirm\": 42}"), SNAPSHOT_ID); },
      {"\"Confirm\"", "as a string"});
}


TEST(ParseRollbackRequestTest, FlagsMustBeBooleans)
{
  for (const char* name : {"DryRun", "DeleteFromService"})
  {
    for (const std::string value : {"\"false\"", "0", "null", "[]"})
    {
      const std::string text = std::string("{\"") + name + "\": " + value + "}";
      SCOPED_TRACE(text);
      ExpectBadRequest([&] { ParseRollbackRequest(ParseBody(text), SNAPSHOT_ID); },
                       {std::string("\"") + name + "\" must be true or false"});
    }
  }
}


TEST(ParseRollbackRequestTest, UnknownKeyRejected)
{
  ExpectBadRequest([] { ParseRollbackRequest(ParseBody("{\"Dryrun\": false}"), SNAPSHOT_ID); },
                   {"unknown key \"Dryrun\"", "\"Confirm\", \"DeleteFromService\", \"DryRun\""});
}


TEST(ParseJsonTest, ValidTextParsed)
{
  Json::Value value;
  std::string error;
  const std::string text = " {\"a\": [1, 2], \"b\": {\"c\": null}} \n";

  ASSERT_TRUE(ParseJson(value, error, text.data(), text.size())) << error;
  EXPECT_EQ(2u, value["a"].size());
  EXPECT_TRUE(value["b"]["c"].isNull());
}


TEST(ParseJsonTest, TrailingTextRejected)
{
  for (const std::string text : {"{} {}", "{\"a\": 1}x", "[1] 2", "1 2", "\"a\" \"b\""})
  {
    SCOPED_TRACE(text);
    Json::Value value;
    std::string error;
    EXPECT_FALSE(ParseJson(value, error, text.data(), text.size()));
    EXPECT_FALSE(error.empty());
  }
}


TEST(ParseJsonTest, DuplicateKeysRejected)
{
  for (const std::string text : {"{\"a\": 1, \"a\": 1}", "{\"a\": 1, \"b\": 2, \"a\": 3}",
                                 "{\"o\": {\"k\": 1, \"k\": 2}}", "[{\"k\": true, \"k\": false}]"})
  {
    SCOPED_TRACE(text);
    Json::Value value;
    std::string error;
    EXPECT_FALSE(ParseJson(value, error, text.data(), text.size()));
    EXPECT_NE(std::string::npos, error.find("Duplicate key")) << error;
  }
}


TEST(ParseJsonTest, SameKeyInSiblingObjectsAccepted)
{
  Json::Value value;
  const std::string text = "[{\"k\": 1}, {\"k\": 2}]";

  ASSERT_TRUE(ParseJson(text, value));
  EXPECT_EQ(2, value[1]["k"].asInt());
}


TEST(ParseJsonTest, StringOverloadRejectsSameTexts)
{
  Json::Value value;

  EXPECT_FALSE(ParseJson("{\"a\": 1, \"a\": 2}", value));
  EXPECT_FALSE(ParseJson("{} trailing", value));
  EXPECT_FALSE(ParseJson("", value));
  EXPECT_TRUE(ParseJson("{\"a\": 1}", value));
  EXPECT_EQ(1, value["a"].asInt());
}


TEST(ParseSnapshotLabelTest, LimitCountsCharacters)
{
  Json::Value body;
  body["Label"] = "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9";  // five characters, ten bytes

  EXPECT_EQ(ParseSnapshotLabel(body, 5), body["Label"].asString());
  ExpectBadRequest([&] { ParseSnapshotLabel(body, 4); }, {"\"Label\"", "4 characters"});
}


TEST(ParseJsonTest, TrailingCommaAndCommentsRejected)
{
  for (const std::string text : {"{\"a\": 1,}", "[1, 2,]", "{\"a\": 1} // note", "// note\n{}"})
  {
    Json::Value value;
    std::string error;
    EXPECT_FALSE(ParseJson(value, error, text.data(), text.size())) << text;
  }
}
