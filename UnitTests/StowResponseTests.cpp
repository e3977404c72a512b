#include "Azure/StowResponse.h"

#include <gtest/gtest.h>
#include <json/json.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

using namespace AzureDicom;

namespace
{
const std::string DICOM_JSON = "application/dicom+json";
const std::string UID_A = "1.2.826.0.1.3680043.8.498.101";
const std::string UID_B = "1.2.826.0.1.3680043.8.498.102";
const std::string UID_C = "1.2.826.0.1.3680043.8.498.103";
const std::string CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2";

// Sun, 06 Nov 1994 08:49:37 GMT, the example date of RFC 9110.
const int64_t RFC_EXAMPLE_SECONDS = 784111777;


Json::Value MakeAttribute(const std::string& vr, const Json::Value& value)
{
  Json::Value attribute;
  attribute["vr"] = vr;
  attribute["Value"].append(value);
  return attribute;
}


Json::Value MakeReferencedItem(const std::string& uid, unsigned int warningReason = 0)
{
  Json::Value item;
  item["00081150"] = MakeAttribute("UI", CT_IMAGE_STORAGE);
  item["00081155"] = MakeAttribute("UI", uid);
  item["00081190"] =
      MakeAttribute("UR", "https://dicom.example/v2/studies/1/series/2/instances/" + uid);
  if (warningReason != 0)
  {
    item["00081196"] = MakeAttribute("US", warningReason);
  }

  return item;
}


Json::Value MakeFailedItem(const std::string& uid, unsigned int failureReason)
{
  Json::Value item;
  item["00081150"] = MakeAttribute("UI", CT_IMAGE_STORAGE);
  item["00081155"] = MakeAttribute("UI", uid);
  item["00081197"] = MakeAttribute("US", failureReason);
  return item;
}


Json::Value MakeSequence(const std::vector<Json::Value>& items)
{
  Json::Value sequence;
  sequence["vr"] = "SQ";
  sequence["Value"] = Json::arrayValue;
  for (const Json::Value& item : items)
  {
    sequence["Value"].append(item);
  }

  return sequence;
}


std::string ToJson(const Json::Value& value)
{
  Json::StreamWriterBuilder builder;
  builder["indentation"] = "";
  return Json::writeString(builder, value);
}


// A STOW-RS dataset; a sequence without items is left out, as the Azure DICOM service does.
std::string MakeDataset(const std::vector<Json::Value>& referenced,
                        const std::vector<Json::Value>& failed)
{
  Json::Value dataset = Json::objectValue;
  if (!referenced.empty())
  {
    dataset["00081199"] = MakeSequence(referenced);
  }

  if (!failed.empty())
  {
    dataset["00081198"] = MakeSequence(failed);
  }

  return ToJson(dataset);
}


StowResponse Parse(long status, const std::string& body, const std::vector<std::string>& uids,
                   const std::string& contentType = DICOM_JSON, const std::string& retryAfter = "")
{
  return ParseStowResponse(status, contentType, body, retryAfter, uids);
}


bool Contains(const std::string& text, const std::string& part)
{
  return text.find(part) != std::string::npos;
}


// Checks that every sent UID is RetryLater and that the messages contain the problem.
void ExpectUnreadable(const StowResponse& response, const std::vector<std::string>& uids,
                      const std::string& problem)
{
  EXPECT_EQ(response.disposition, BatchDisposition::PerInstance);
  EXPECT_TRUE(Contains(response.message, problem)) << response.message;
  ASSERT_EQ(response.instances.size(), uids.size());
  for (const std::string& uid : uids)
  {
    const InstanceResult& result = response.instances.at(uid);
    EXPECT_EQ(result.disposition, InstanceDisposition::RetryLater) << uid;
    EXPECT_TRUE(Contains(result.message, problem)) << result.message;
  }
}


const InstanceResult& GetOnly(const StowResponse& response, const std::string& uid)
{
  EXPECT_EQ(response.instances.size(), 1u);
  return response.instances.at(uid);
}
}  // namespace


TEST(StowResponseTest, Status200AllMirrored)
{
  const StowResponse response = Parse(
      200, MakeDataset({MakeReferencedItem(UID_A), MakeReferencedItem(UID_B)}, {}), {UID_A, UID_B});

  EXPECT_EQ(response.disposition, BatchDisposition::PerInstance);
  EXPECT_EQ(response.message, "");
  EXPECT_EQ(response.retryAfterSeconds, -1);
  ASSERT_EQ(response.instances.size(), 2u);
  EXPECT_EQ(response.instances.at(UID_A).disposition, InstanceDisposition::Mirrored);
  EXPECT_EQ(response.instances.at(UID_B).disposition, InstanceDisposition::Mirrored);
  EXPECT_EQ(response.instances.at(UID_A).message, "");
  EXPECT_EQ(response.instances.at(UID_A).warningReason, 0u);
  EXPECT_EQ(response.instances.at(UID_A).failureReason, 0u);
}


TEST(StowResponseTest, Status202WarningsKept)
{
  const StowResponse response =
      Parse(202,
            MakeDataset({MakeReferencedItem(UID_A, WARNING_COERCED),
                         MakeReferencedItem(UID_B, WARNING_ELEMENTS_DISCARDED)},
                        {}),
            {UID_A, UID_B});

  ASSERT_EQ(response.instances.size(), 2u);
  const InstanceResult& coerced = response.instances.at(UID_A);
  EXPECT_EQ(coerced.disposition, InstanceDisposition::Mirrored);
  EXPECT_EQ(coerced.warningReason, 45063u);
  EXPECT_TRUE(Contains(coerced.message, "45063")) << coerced.message;
  const InstanceResult& discarded = response.instances.at(UID_B);
  EXPECT_EQ(discarded.disposition, InstanceDisposition::Mirrored);
  EXPECT_EQ(discarded.warningReason, 1u);
  EXPECT_TRUE(Contains(discarded.message, "warning 1")) << discarded.message;
}


TEST(StowResponseTest, Status202MixedResults)
{
  const StowResponse response = Parse(
      202,
      MakeDataset({MakeReferencedItem(UID_A)}, {MakeFailedItem(UID_B, REASON_VALIDATION_FAILED),
                                                MakeFailedItem(UID_C, REASON_ALREADY_EXISTS)}),
      {UID_A, UID_B, UID_C});

  ASSERT_EQ(response.instances.size(), 3u);
  EXPECT_EQ(response.instances.at(UID_A).disposition, InstanceDisposition::Mirrored);
  EXPECT_EQ(response.instances.at(UID_B).disposition, InstanceDisposition::Failed);
  EXPECT_EQ(response.instances.at(UID_B).failureReason, 43264u);
  EXPECT_EQ(response.instances.at(UID_C).disposition, InstanceDisposition::AlreadyPresent);
  EXPECT_EQ(response.instances.at(UID_C).failureReason, 45070u);
}


TEST(StowResponseTest, Status409AlreadyPresentForAll)
{
  const StowResponse response =
      Parse(409,
            MakeDataset({}, {MakeFailedItem(UID_A, REASON_ALREADY_EXISTS),
                             MakeFailedItem(UID_B, REASON_ALREADY_EXISTS)}),
            {UID_A, UID_B});

  EXPECT_EQ(response.disposition, BatchDisposition::PerInstance);
  ASSERT_EQ(response.instances.size(), 2u);
  for (const std::string& uid : {UID_A, UID_B})
  {
    const InstanceResult& result = response.instances.at(uid);
    EXPECT_EQ(result.disposition, InstanceDisposition::AlreadyPresent) << uid;
    EXPECT_EQ(result.failureReason, 45070u) << uid;
    EXPECT_TRUE(Contains(result.message, "45070")) << result.message;
  }
}


TEST(StowResponseTest, Status409BeingCreated)
{
  const StowResponse response =
      Parse(409, MakeDataset({}, {MakeFailedItem(UID_A, REASON_BEING_CREATED)}), {UID_A});

  const InstanceResult& result = GetOnly(response, UID_A);
  EXPECT_EQ(result.disposition, InstanceDisposition::RetryLater);
  EXPECT_EQ(result.failureReason, 45071u);
  EXPECT_TRUE(Contains(result.message, "45071")) << result.message;
}


TEST(StowResponseTest, Status409ValidationFailed)
{
  const StowResponse response =
      Parse(409, MakeDataset({}, {MakeFailedItem(UID_A, REASON_VALIDATION_FAILED)}), {UID_A});

  const InstanceResult& result = GetOnly(response, UID_A);
  EXPECT_EQ(result.disposition, InstanceDisposition::Failed);
  EXPECT_EQ(result.failureReason, 43264u);
  EXPECT_EQ(result.message, "validation failed (43264)");
}


TEST(StowResponseTest, Status409StudyUidMismatch)
{
  const StowResponse response =
      Parse(409, MakeDataset({}, {MakeFailedItem(UID_A, REASON_STUDY_UID_MISMATCH)}), {UID_A});

  const InstanceResult& result = GetOnly(response, UID_A);
  EXPECT_EQ(result.disposition, InstanceDisposition::Failed);
  EXPECT_EQ(result.failureReason, 43265u);
  EXPECT_TRUE(Contains(result.message, "43265")) << result.message;
}


TEST(StowResponseTest, Status409ProcessingFailure)
{
  const StowResponse response =
      Parse(409, MakeDataset({}, {MakeFailedItem(UID_A, REASON_PROCESSING_FAILURE)}), {UID_A});

  const InstanceResult& result = GetOnly(response, UID_A);
  EXPECT_EQ(result.disposition, InstanceDisposition::RetryBackoff);
  EXPECT_EQ(result.failureReason, 272u);
  EXPECT_TRUE(Contains(result.message, "272")) << result.message;
}


TEST(StowResponseTest, Status409UnknownReason)
{
  const StowResponse response =
      Parse(409, MakeDataset({}, {MakeFailedItem(UID_A, 0xC000)}), {UID_A});

  const InstanceResult& result = GetOnly(response, UID_A);
  EXPECT_EQ(result.disposition, InstanceDisposition::Failed);
  EXPECT_EQ(result.failureReason, 49152u);
  EXPECT_TRUE(Contains(result.message, "49152")) << result.message;
  EXPECT_TRUE(Contains(result.message, "0xC000")) << result.message;
}


TEST(StowResponseTest, Status409ReferencedIsMirrored)
{
  // Orthanc's DICOMweb plugin responds with 409 when some parts belong to another study than the
  // URL names, and still stores and references the others.
  const StowResponse response = Parse(
      409,
      MakeDataset({MakeReferencedItem(UID_A)}, {MakeFailedItem(UID_B, REASON_PROCESSING_FAILURE)}),
      {UID_A, UID_B});

  ASSERT_EQ(response.instances.size(), 2u);
  EXPECT_EQ(response.instances.at(UID_A).disposition, InstanceDisposition::Mirrored);
  EXPECT_EQ(response.instances.at(UID_B).disposition, InstanceDisposition::RetryBackoff);
}


TEST(StowResponseTest, ErrorCommentsInMessage)
{
  Json::Value item = MakeFailedItem(UID_A, REASON_VALIDATION_FAILED);
  Json::Value comment;
  comment["00000902"] = MakeAttribute("LO", "DICOM100: (0010,0020) - Content \"\" is empty");
  item["00741048"] = MakeSequence({comment});

  const StowResponse response = Parse(409, MakeDataset({}, {item}), {UID_A});

  const InstanceResult& result = GetOnly(response, UID_A);
  EXPECT_EQ(result.disposition, InstanceDisposition::Failed);
  EXPECT_TRUE(Contains(result.message, "validation failed (43264)")) << result.message;
  EXPECT_TRUE(Contains(result.message, "DICOM100: (0010,0020)")) << result.message;
}


TEST(StowResponseTest, MalformedErrorCommentsIgnored)
{
  Json::Value item = MakeFailedItem(UID_A, REASON_VALIDATION_FAILED);
  item["00741048"] = "not a sequence";

  const StowResponse response = Parse(409, MakeDataset({}, {item}), {UID_A});

  const InstanceResult& result = GetOnly(response, UID_A);
  EXPECT_EQ(result.disposition, InstanceDisposition::Failed);
  EXPECT_EQ(result.message, "validation failed (43264)");
}


TEST(StowResponseTest, UnconfirmedInstanceRetried)
{
  const StowResponse response =
      Parse(200, MakeDataset({MakeReferencedItem(UID_A)}, {}), {UID_A, UID_B});

  ASSERT_EQ(response.instances.size(), 2u);
  EXPECT_EQ(response.instances.at(UID_A).disposition, InstanceDisposition::Mirrored);
  EXPECT_EQ(response.instances.at(UID_B).disposition, InstanceDisposition::RetryLater);
  EXPECT_EQ(response.instances.at(UID_B).message, "not confirmed by the service");
}


TEST(StowResponseTest, UnsentInstanceIgnored)
{
  const StowResponse response =
      Parse(202, MakeDataset({MakeReferencedItem(UID_A), MakeReferencedItem(UID_C)}, {}), {UID_A});

  ASSERT_EQ(response.instances.size(), 1u);
  EXPECT_EQ(response.instances.count(UID_C), 0u);
  EXPECT_EQ(response.instances.at(UID_A).disposition, InstanceDisposition::Mirrored);
}


TEST(StowResponseTest, BothSequencesNotMirrored)
{
  const StowResponse response =
      Parse(202,
            MakeDataset({MakeReferencedItem(UID_A), MakeReferencedItem(UID_B)},
                        {MakeFailedItem(UID_A, REASON_VALIDATION_FAILED),
                         MakeFailedItem(UID_B, REASON_PROCESSING_FAILURE)}),
            {UID_A, UID_B});

  ASSERT_EQ(response.instances.size(), 2u);
  EXPECT_EQ(response.instances.at(UID_A).disposition, InstanceDisposition::Failed);
  EXPECT_EQ(response.instances.at(UID_B).disposition, InstanceDisposition::RetryBackoff);
}


TEST(StowResponseTest, FirstFailureKept)
{
  const StowResponse response =
      Parse(409,
            MakeDataset({}, {MakeFailedItem(UID_A, REASON_BEING_CREATED),
                             MakeFailedItem(UID_A, REASON_VALIDATION_FAILED)}),
            {UID_A});

  EXPECT_EQ(GetOnly(response, UID_A).failureReason, 45071u);
}


TEST(StowResponseTest, FailedItemWithoutUid)
{
  // The Azure DICOM service lists a part that it could not parse without its UID. UID_B is the
  // only instance that the response does not list, so the item is its outcome.
  Json::Value item;
  item["00081197"] = MakeAttribute("US", REASON_VALIDATION_FAILED);

  const StowResponse response =
      Parse(202, MakeDataset({MakeReferencedItem(UID_A)}, {item}), {UID_A, UID_B});

  ASSERT_EQ(response.instances.size(), 2u);
  EXPECT_EQ(response.instances.at(UID_A).disposition, InstanceDisposition::Mirrored);
  EXPECT_EQ(response.instances.at(UID_B).disposition, InstanceDisposition::Failed);
  EXPECT_EQ(response.instances.at(UID_B).failureReason, 43264u);
}


TEST(StowResponseTest, FailedItemWithoutUidAlone)
{
  // A one-instance request whose part the service could not parse, with the response 409.
  Json::Value item;
  item["00081197"] = MakeAttribute("US", REASON_VALIDATION_FAILED);

  const StowResponse response = Parse(409, MakeDataset({}, {item}), {UID_A});

  EXPECT_EQ(GetOnly(response, UID_A).disposition, InstanceDisposition::Failed);
  EXPECT_EQ(GetOnly(response, UID_A).failureReason, 43264u);
}


TEST(StowResponseTest, FailedItemWithoutUidAmbiguous)
{
  // Two instances are not listed: the item could be either's, so neither is confirmed.
  Json::Value item;
  item["00081197"] = MakeAttribute("US", REASON_VALIDATION_FAILED);

  const StowResponse response =
      Parse(202, MakeDataset({MakeReferencedItem(UID_A)}, {item}), {UID_A, UID_B, UID_C});

  ASSERT_EQ(response.instances.size(), 3u);
  EXPECT_EQ(response.instances.at(UID_B).disposition, InstanceDisposition::RetryLater);
  EXPECT_EQ(response.instances.at(UID_B).message, "not confirmed by the service");
  EXPECT_EQ(response.instances.at(UID_C).disposition, InstanceDisposition::RetryLater);
}


TEST(StowResponseTest, TwoFailedItemsWithoutUid)
{
  Json::Value item;
  item["00081197"] = MakeAttribute("US", REASON_VALIDATION_FAILED);

  const StowResponse response =
      Parse(202, MakeDataset({MakeReferencedItem(UID_A)}, {item, item}), {UID_A, UID_B});

  EXPECT_EQ(response.instances.at(UID_B).disposition, InstanceDisposition::RetryLater);
}


TEST(StowResponseTest, PaddedUidMatches)
{
  const StowResponse response =
      Parse(200, MakeDataset({MakeReferencedItem(UID_A + std::string(1, '\0'))}, {}), {UID_A});

  EXPECT_EQ(GetOnly(response, UID_A).disposition, InstanceDisposition::Mirrored);
}


TEST(StowResponseTest, EmptySequenceWithoutValue)
{
  const std::string body = R"({"00081198": {"vr": "SQ"}, "00081199": {"vr": "SQ", "Value": [)" +
                           ToJson(MakeReferencedItem(UID_A)) + "]}}";

  const StowResponse response = Parse(200, body, {UID_A});

  EXPECT_EQ(GetOnly(response, UID_A).disposition, InstanceDisposition::Mirrored);
}


TEST(StowResponseTest, EmptySequencesConfirmNothing)
{
  const StowResponse response =
      Parse(200, R"({"00081198": {"vr": "SQ", "Value": []}, "00081199": {"vr": "SQ"}})", {UID_A});

  EXPECT_EQ(GetOnly(response, UID_A).disposition, InstanceDisposition::RetryLater);
}


TEST(StowResponseTest, OrthancDicomWebResponse)
{
  // The shape of the response of Orthanc's DICOMweb plugin to POST /dicom-web/studies.
  const std::string body = R"({
    "00081190": {"vr": "UR", "Value": ["http://127.0.0.1:8042/dicom-web/studies/2.25.1"]},
    "00081198": {"vr": "SQ", "Value": []},
    "00081199": {"vr": "SQ", "Value": [
      {
        "00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
        "00081155": {"vr": "UI", "Value": ["1.2.826.0.1.3680043.8.498.101"]},
        "00081190": {"vr": "UR", "Value": ["http://127.0.0.1:8042/dicom-web/studies/2.25.1/series/2.25.2/instances/1.2.826.0.1.3680043.8.498.101"]}
      },
      {
        "00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
        "00081155": {"vr": "UI", "Value": ["1.2.826.0.1.3680043.8.498.102"]},
        "00081190": {"vr": "UR", "Value": ["http://127.0.0.1:8042/dicom-web/studies/2.25.1/series/2.25.2/instances/1.2.826.0.1.3680043.8.498.102"]}
      }
    ]}
  })";

  const StowResponse response = Parse(200, body, {UID_A, UID_B});

  EXPECT_EQ(response.disposition, BatchDisposition::PerInstance);
  ASSERT_EQ(response.instances.size(), 2u);
  EXPECT_EQ(response.instances.at(UID_A).disposition, InstanceDisposition::Mirrored);
  EXPECT_EQ(response.instances.at(UID_B).disposition, InstanceDisposition::Mirrored);
}


TEST(StowResponseTest, AzureWarningResponse)
{
  // The shape of a v2 response of the Azure DICOM service for an instance stored with warnings.
  const std::string body = R"({
    "00081199": {"vr": "SQ", "Value": [{
      "00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
      "00081155": {"vr": "UI", "Value": ["1.2.826.0.1.3680043.8.498.101"]},
      "00081190": {"vr": "UR", "Value": ["https://ws-dicom.dicom.azurehealthcareapis.com/v2/studies/2.25.1/series/2.25.2/instances/1.2.826.0.1.3680043.8.498.101"]},
      "00081196": {"vr": "US", "Value": [1]},
      "00741048": {"vr": "SQ", "Value": [
        {"00000902": {"vr": "LO", "Value": ["DICOM100: (0008,0020) - Content \"20261301\" does not validate VR DA"]}}
      ]}
    }]}
  })";

  const StowResponse response = Parse(202, body, {UID_A}, "application/dicom+json; charset=utf-8");

  const InstanceResult& result = GetOnly(response, UID_A);
  EXPECT_EQ(result.disposition, InstanceDisposition::Mirrored);
  EXPECT_EQ(result.warningReason, 1u);
  EXPECT_TRUE(Contains(result.message, "(0008,0020)")) << result.message;
}


TEST(StowResponseTest, PlainJsonContentType)
{
  const StowResponse response =
      Parse(200, MakeDataset({MakeReferencedItem(UID_A)}, {}), {UID_A}, "Application/JSON");

  EXPECT_EQ(GetOnly(response, UID_A).disposition, InstanceDisposition::Mirrored);
}


TEST(StowResponseTest, WrongContentType)
{
  const StowResponse response =
      Parse(200, MakeDataset({MakeReferencedItem(UID_A)}, {}), {UID_A}, "text/html");

  ExpectUnreadable(response, {UID_A}, "Content-Type is \"text/html\"");
}


TEST(StowResponseTest, MissingContentType)
{
  const StowResponse response =
      Parse(200, MakeDataset({MakeReferencedItem(UID_A)}, {}), {UID_A}, "");

  ExpectUnreadable(response, {UID_A}, "no Content-Type");
}


TEST(StowResponseTest, InvalidJson)
{
  const StowResponse response = Parse(200, "<html>Service Unavailable</html>", {UID_A, UID_B});

  ExpectUnreadable(response, {UID_A, UID_B}, "not DICOM JSON");
}


TEST(StowResponseTest, EmptyBody)
{
  const StowResponse response = Parse(202, "", {UID_A});

  ExpectUnreadable(response, {UID_A}, "not DICOM JSON");
}


TEST(StowResponseTest, TruncatedBody)
{
  const std::string body = MakeDataset({MakeReferencedItem(UID_A)}, {});

  const StowResponse response = Parse(200, body.substr(0, body.size() / 2), {UID_A});

  ExpectUnreadable(response, {UID_A}, "not DICOM JSON");
}


TEST(StowResponseTest, TrailingGarbage)
{
  const StowResponse response =
      Parse(200, MakeDataset({MakeReferencedItem(UID_A)}, {}) + "}", {UID_A});

  ExpectUnreadable(response, {UID_A}, "not DICOM JSON");
}


TEST(StowResponseTest, DuplicateKeys)
{
  const StowResponse response =
      Parse(200, R"({"00081199": {"vr": "SQ"}, "00081199": {"vr": "SQ"}})", {UID_A});

  ExpectUnreadable(response, {UID_A}, "not DICOM JSON");
}


TEST(StowResponseTest, RootNotObject)
{
  const StowResponse response =
      Parse(200, "[" + MakeDataset({MakeReferencedItem(UID_A)}, {}) + "]", {UID_A});

  ExpectUnreadable(response, {UID_A}, "root");
}


TEST(StowResponseTest, MissingSequences)
{
  const StowResponse response = Parse(
      200, R"({"00081190": {"vr": "UR", "Value": ["https://dicom.example/studies/1"]}})", {UID_A});

  ExpectUnreadable(response, {UID_A}, "lists neither ReferencedSOPSequence");
}


TEST(StowResponseTest, SequenceNotObject)
{
  const StowResponse response = Parse(200, R"({"00081199": [1, 2]})", {UID_A});

  ExpectUnreadable(response, {UID_A}, "ReferencedSOPSequence (0008,1199)");
}


TEST(StowResponseTest, SequenceWrongVr)
{
  Json::Value dataset;
  dataset["00081199"] = MakeSequence({MakeReferencedItem(UID_A)});
  dataset["00081199"]["vr"] = "UI";

  const StowResponse response = Parse(200, ToJson(dataset), {UID_A});

  ExpectUnreadable(response, {UID_A}, "has vr \"UI\", expected \"SQ\"");
}


TEST(StowResponseTest, SequenceValueNotArray)
{
  Json::Value dataset;
  dataset["00081199"]["vr"] = "SQ";
  dataset["00081199"]["Value"] = MakeReferencedItem(UID_A);

  const StowResponse response = Parse(200, ToJson(dataset), {UID_A});

  ExpectUnreadable(response, {UID_A}, "is not an array");
}


TEST(StowResponseTest, ItemNotObject)
{
  const StowResponse response =
      Parse(200, R"({"00081199": {"vr": "SQ", "Value": ["1.2.3"]}})", {UID_A});

  ExpectUnreadable(response, {UID_A}, "item 1 of ReferencedSOPSequence");
}


TEST(StowResponseTest, UidNotString)
{
  Json::Value item = MakeReferencedItem(UID_A);
  item["00081155"] = MakeAttribute("UI", 12345);

  const StowResponse response =
      Parse(200, MakeDataset({MakeReferencedItem(UID_B), item}, {}), {UID_A, UID_B});

  ExpectUnreadable(response, {UID_A, UID_B}, "ReferencedSOPInstanceUID (0008,1155)");
}


TEST(StowResponseTest, UidValueNotArray)
{
  Json::Value item = MakeReferencedItem(UID_A);
  item["00081155"]["Value"] = UID_A;

  const StowResponse response = Parse(200, MakeDataset({item}, {}), {UID_A});

  ExpectUnreadable(response, {UID_A}, "is not an array");
}


TEST(StowResponseTest, UidWrongVr)
{
  Json::Value item = MakeReferencedItem(UID_A);
  item["00081155"]["vr"] = "LO";

  const StowResponse response = Parse(200, MakeDataset({item}, {}), {UID_A});

  ExpectUnreadable(response, {UID_A}, "has vr \"LO\", expected \"UI\"");
}


TEST(StowResponseTest, UidWithTwoValues)
{
  Json::Value item = MakeReferencedItem(UID_A);
  item["00081155"]["Value"].append(UID_B);

  const StowResponse response = Parse(200, MakeDataset({item}, {}), {UID_A, UID_B});

  ExpectUnreadable(response, {UID_A, UID_B}, "is not one string");
}


TEST(StowResponseTest, ReasonNotNumber)
{
  Json::Value item = MakeFailedItem(UID_A, 0);
  item["00081197"] = MakeAttribute("US", "45070");

  const StowResponse response = Parse(409, MakeDataset({}, {item}), {UID_A});

  ExpectUnreadable(response, {UID_A}, "FailureReason (0008,1197)");
}


TEST(StowResponseTest, ReasonOutOfRange)
{
  const StowResponse response =
      Parse(409, MakeDataset({}, {MakeFailedItem(UID_A, 70000)}), {UID_A});

  ExpectUnreadable(response, {UID_A}, "not one number from 0 to 65535");
}


TEST(StowResponseTest, ReasonWrongVr)
{
  Json::Value item = MakeFailedItem(UID_A, REASON_ALREADY_EXISTS);
  item["00081197"]["vr"] = "UI";

  const StowResponse response = Parse(409, MakeDataset({}, {item}), {UID_A});

  ExpectUnreadable(response, {UID_A}, "expected \"US\"");
}


TEST(StowResponseTest, FailedItemWithoutReason)
{
  Json::Value item = MakeFailedItem(UID_A, 0);
  item.removeMember("00081197");

  const StowResponse response = Parse(409, MakeDataset({}, {item}), {UID_A});

  ExpectUnreadable(response, {UID_A}, "has no FailureReason");
}


TEST(StowResponseTest, WarningNotNumber)
{
  Json::Value item = MakeReferencedItem(UID_A);
  item["00081196"] = MakeAttribute("US", -1);

  const StowResponse response = Parse(202, MakeDataset({item}, {}), {UID_A});

  ExpectUnreadable(response, {UID_A}, "WarningReason (0008,1196)");
}


TEST(StowResponseTest, Status409Unreadable)
{
  const StowResponse response = Parse(409, "Conflict", {UID_A, UID_B}, "text/plain");

  ExpectUnreadable(response, {UID_A, UID_B}, "not DICOM JSON");
}


TEST(StowResponseTest, Status400FailsAll)
{
  const StowResponse response =
      Parse(400, "  The request body is not a valid multipart/related body.\r\n", {UID_A, UID_B},
            "text/plain");

  EXPECT_EQ(response.disposition, BatchDisposition::PerInstance);
  EXPECT_TRUE(Contains(response.message, "The request body is not a valid multipart/related body."))
      << response.message;
  ASSERT_EQ(response.instances.size(), 2u);
  for (const std::string& uid : {UID_A, UID_B})
  {
    const InstanceResult& result = response.instances.at(uid);
    EXPECT_EQ(result.disposition, InstanceDisposition::Failed) << uid;
    EXPECT_EQ(result.failureReason, 0u) << uid;
    EXPECT_EQ(result.message, response.message) << uid;
  }
}


TEST(StowResponseTest, Status400EmptyBody)
{
  const StowResponse response = Parse(400, "", {UID_A}, "");

  const InstanceResult& result = GetOnly(response, UID_A);
  EXPECT_EQ(result.disposition, InstanceDisposition::Failed);
  EXPECT_EQ(result.message, "the service rejected the request as malformed");
}


TEST(StowResponseTest, Status400WithReasons)
{
  const StowResponse response =
      Parse(400,
            MakeDataset(
                {}, {MakeFailedItem(UID_A, 0xC000), MakeFailedItem(UID_B, REASON_ALREADY_EXISTS)}),
            {UID_A, UID_B, UID_C});

  ASSERT_EQ(response.instances.size(), 3u);
  const InstanceResult& first = response.instances.at(UID_A);
  EXPECT_EQ(first.disposition, InstanceDisposition::Failed);
  EXPECT_EQ(first.failureReason, 49152u);
  EXPECT_TRUE(Contains(first.message, "49152")) << first.message;
  const InstanceResult& second = response.instances.at(UID_B);
  EXPECT_EQ(second.disposition, InstanceDisposition::Failed);
  EXPECT_EQ(second.failureReason, 45070u);
  const InstanceResult& unlisted = response.instances.at(UID_C);
  EXPECT_EQ(unlisted.disposition, InstanceDisposition::Failed);
  EXPECT_EQ(unlisted.failureReason, 0u);
}


TEST(StowResponseTest, Status400ReferencedMirrored)
{
  // Orthanc's DICOMweb plugin responds with 400 when a part is not DICOM, and stores the other
  // parts.
  const StowResponse response =
      Parse(400, MakeDataset({MakeReferencedItem(UID_A)}, {MakeFailedItem(UID_B, 0xC000)}),
            {UID_A, UID_B});

  ASSERT_EQ(response.instances.size(), 2u);
  EXPECT_EQ(response.instances.at(UID_A).disposition, InstanceDisposition::Mirrored);
  EXPECT_EQ(response.instances.at(UID_B).disposition, InstanceDisposition::Failed);
}


TEST(StowResponseTest, Status415FailsAll)
{
  const StowResponse response =
      Parse(415, "The content type of the part is not supported.", {UID_A}, "text/plain");

  EXPECT_EQ(response.disposition, BatchDisposition::PerInstance);
  EXPECT_TRUE(Contains(response.message, "media type")) << response.message;
  const InstanceResult& result = GetOnly(response, UID_A);
  EXPECT_EQ(result.disposition, InstanceDisposition::Failed);
  EXPECT_TRUE(Contains(result.message, "The content type of the part is not supported."))
      << result.message;
}


TEST(StowResponseTest, BatchStatusClasses)
{
  const std::vector<std::pair<long, BatchDisposition>> cases = {
      {401, BatchDisposition::TokenRejected}, {403, BatchDisposition::Forbidden},
      {404, BatchDisposition::WrongEndpoint}, {424, BatchDisposition::WrongEndpoint},
      {413, BatchDisposition::TooLarge},      {429, BatchDisposition::Transient},
      {500, BatchDisposition::Transient},     {502, BatchDisposition::Transient},
      {503, BatchDisposition::Transient},     {504, BatchDisposition::Transient},
      {0, BatchDisposition::Transient},       {204, BatchDisposition::Transient},
      {301, BatchDisposition::Transient},     {406, BatchDisposition::Transient},
      {418, BatchDisposition::Transient},     {599, BatchDisposition::Transient}};

  for (const auto& statusCase : cases)
  {
    const StowResponse response =
        Parse(statusCase.first, MakeDataset({MakeReferencedItem(UID_A)}, {}), {UID_A});
    EXPECT_EQ(response.disposition, statusCase.second) << "HTTP " << statusCase.first;
    EXPECT_TRUE(response.instances.empty()) << "HTTP " << statusCase.first;
    EXPECT_FALSE(response.message.empty()) << "HTTP " << statusCase.first;
  }
}


TEST(StowResponseTest, BatchMessageFromService)
{
  const StowResponse response =
      Parse(403, "{\"error\":{\"code\":\"Forbidden\",\"message\":\"Authorization failed.\"}}\n",
            {UID_A}, "application/json");

  EXPECT_EQ(response.message,
            "{\"error\":{\"code\":\"Forbidden\",\"message\":\"Authorization failed.\"}}");
}


TEST(StowResponseTest, BatchMessageDescribesEmptyBody)
{
  EXPECT_EQ(Parse(401, "", {UID_A}).message, "the service rejected the access token");
  EXPECT_EQ(Parse(404, "", {UID_A}).message, "the STOW-RS URL was not found");
  EXPECT_EQ(Parse(418, "", {UID_A}).message, "unexpected HTTP status 418");
}


TEST(StowResponseTest, LongBodyTrimmed)
{
  const std::string body = std::string(100000, 'x');

  const StowResponse response = Parse(503, body, {UID_A}, "text/plain");

  EXPECT_LE(response.message.size(), 1100u);
  EXPECT_GE(response.message.size(), 1000u);
  EXPECT_EQ(response.message.substr(response.message.size() - 3), "...");
}


TEST(StowResponseTest, ControlCharactersReplaced)
{
  const std::string body =
      std::string("line one\r\n\tline\x01two\x7f") + std::string(1, '\0') + "three\xff end";

  const StowResponse response = Parse(500, body, {UID_A}, "text/plain");

  EXPECT_EQ(response.message, "line one line two three? end");
}


TEST(StowResponseTest, RetryAfterSeconds)
{
  const StowResponse response = Parse(429, "", {UID_A}, "", "120");

  EXPECT_EQ(response.retryAfterSeconds, 120);
}


TEST(StowResponseTest, RetryAfterOnEveryStatus)
{
  EXPECT_EQ(Parse(200, MakeDataset({MakeReferencedItem(UID_A)}, {}), {UID_A}, DICOM_JSON, "7")
                .retryAfterSeconds,
            7);
  EXPECT_EQ(Parse(409, "", {UID_A}, DICOM_JSON, "8").retryAfterSeconds, 8);
  EXPECT_EQ(Parse(400, "", {UID_A}, DICOM_JSON, "9").retryAfterSeconds, 9);
}


TEST(StowResponseTest, RetryAfterDateInPast)
{
  const StowResponse response = Parse(503, "", {UID_A}, "", "Sun, 06 Nov 1994 08:49:37 GMT");

  EXPECT_EQ(response.retryAfterSeconds, 0);
}


TEST(StowResponseTest, RetryAfterDateInFuture)
{
  const StowResponse response = Parse(503, "", {UID_A}, "", "Fri, 31 Dec 9999 23:59:59 GMT");

  EXPECT_GT(response.retryAfterSeconds, 1e8);
}


TEST(StowResponseTest, RetryAfterGarbage)
{
  EXPECT_EQ(Parse(503, "", {UID_A}, "", "soon").retryAfterSeconds, -1);
  EXPECT_EQ(Parse(503, "", {UID_A}, "", "").retryAfterSeconds, -1);
}


TEST(StowResponseTest, ParseRetryAfterDeltaSeconds)
{
  EXPECT_EQ(ParseRetryAfter("0", RFC_EXAMPLE_SECONDS), 0);
  EXPECT_EQ(ParseRetryAfter("30", RFC_EXAMPLE_SECONDS), 30);
  EXPECT_EQ(ParseRetryAfter(" \t30 ", RFC_EXAMPLE_SECONDS), 30);
  EXPECT_EQ(ParseRetryAfter("007", RFC_EXAMPLE_SECONDS), 7);
  EXPECT_EQ(ParseRetryAfter("999999999999999999999999", RFC_EXAMPLE_SECONDS), 1e9);
}


TEST(StowResponseTest, ParseRetryAfterImfFixdate)
{
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:50:07 GMT", RFC_EXAMPLE_SECONDS), 30);
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE_SECONDS), 0);
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:00 GMT", RFC_EXAMPLE_SECONDS), 0);
  EXPECT_EQ(ParseRetryAfter("Mon, 07 Nov 1994 08:49:37 GMT", RFC_EXAMPLE_SECONDS), 86400);
  EXPECT_EQ(ParseRetryAfter("Thu, 01 Jan 1970 00:00:00 GMT", 0), 0);
  EXPECT_EQ(ParseRetryAfter("Thu, 01 Jan 1970 00:01:40 GMT", 0), 100);
  EXPECT_EQ(ParseRetryAfter("Tue, 29 Feb 2028 00:00:00 GMT", 1835395200 - 10), 10);
}


TEST(StowResponseTest, ParseRetryAfterRfc850Date)
{
  EXPECT_EQ(ParseRetryAfter("Sunday, 06-Nov-94 08:50:37 GMT", RFC_EXAMPLE_SECONDS), 60);
  EXPECT_EQ(ParseRetryAfter("Monday, 01-Jan-35 00:00:00 GMT", 2051222400 - 5), 5);
}


TEST(StowResponseTest, ParseRetryAfterRfc850Century)
{
  // On 2026-12-03 a two-digit year is in this century up to 2076, 50 years ahead.
  const int64_t now = 1796256000;

  EXPECT_GT(ParseRetryAfter("Saturday, 01-Jan-50 00:00:00 GMT", now), 23 * 365 * 86400.0);
  EXPECT_GT(ParseRetryAfter("Wednesday, 01-Jan-76 00:00:00 GMT", now), 0);
  EXPECT_EQ(ParseRetryAfter("Friday, 01-Jan-77 00:00:00 GMT", now), 0);
  EXPECT_EQ(ParseRetryAfter("Tuesday, 01-Jan-80 00:00:00 GMT", now), 0);
}


TEST(StowResponseTest, ParseRetryAfterAsctimeDate)
{
  EXPECT_EQ(ParseRetryAfter("Sun Nov  6 08:51:37 1994", RFC_EXAMPLE_SECONDS), 120);
  EXPECT_EQ(ParseRetryAfter("Wed Nov 16 08:49:37 1994", RFC_EXAMPLE_SECONDS), 864000);
}


TEST(StowResponseTest, ParseRetryAfterInvalid)
{
  const std::vector<std::string> values = {"",
                                           "   ",
                                           "-5",
                                           "+5",
                                           "1.5",
                                           "12abc",
                                           "1 2",
                                           "Sun, 06 Nov 1994 08:49:37",
                                           "Sun, 06 Nov 1994 08:49:37 UTC",
                                           "Sun, 06 Nov 1994 08:49:37 GMT x",
                                           "sun, 06 Nov 1994 08:49:37 GMT",
                                           "Sun, 6 Nov 1994 08:49:37 GMT",
                                           "Sun, 06 November 1994 08:49:37 GMT",
                                           "Sun, 30 Feb 1994 08:49:37 GMT",
                                           "Sun, 29 Feb 1900 08:49:37 GMT",
                                           "Sun, 06 Nov 1994 24:00:00 GMT",
                                           "Sun, 06 Nov 1994 08:60:00 GMT",
                                           "Sun, 06 Nov 1994 08:49:61 GMT",
                                           "Sun, 00 Nov 1994 08:49:37 GMT",
                                           "Sun, 06 Nov 94 08:49:37 GMT",
                                           "Sun, 06-Nov-94 08:49:37 GMT",
                                           "Sun Nov 6 08:49:37 1994",
                                           "2026-12-03T10:15:30Z"};

  for (const std::string& value : values)
  {
    EXPECT_EQ(ParseRetryAfter(value, RFC_EXAMPLE_SECONDS), -1) << "\"" << value << "\"";
  }
}


TEST(StowResponseTest, ExcerptKeepsUtf8)
{
  EXPECT_EQ(MakePrintableExcerpt("caf\xc3\xa9 \xe2\x82\xac", 100), "caf\xc3\xa9 \xe2\x82\xac");
}


TEST(StowResponseTest, ExcerptCutsAtCharacter)
{
  EXPECT_EQ(MakePrintableExcerpt("ab\xe2\x82\xac", 4), "ab...");
  EXPECT_EQ(MakePrintableExcerpt("ab\xe2\x82\xac", 5), "ab\xe2\x82\xac");
}


TEST(StowResponseTest, ExcerptReplacesInvalidUtf8)
{
  EXPECT_EQ(MakePrintableExcerpt("a\xc0\xafz", 100), "a??z");       // overlong '/'
  EXPECT_EQ(MakePrintableExcerpt("a\xed\xa0\x80z", 100), "a???z");  // surrogate U+D800
  EXPECT_EQ(MakePrintableExcerpt("a\xe2\x82", 100), "a??");         // cut by the end of the text
}


TEST(StowResponseTest, ExcerptReplacesC1Controls)
{
  EXPECT_EQ(MakePrintableExcerpt("a\xc2\x85z", 100), "a z");
}


TEST(StowResponseTest, TruncationNeverMirrors)
{
  const std::string body = MakeDataset({MakeReferencedItem(UID_A), MakeReferencedItem(UID_B)},
                                       {MakeFailedItem(UID_C, REASON_ALREADY_EXISTS)});

  for (size_t size = 0; size < body.size(); size++)
  {
    const StowResponse response = Parse(200, body.substr(0, size), {UID_A, UID_B, UID_C});
    ASSERT_EQ(response.instances.size(), 3u) << size;
    for (const auto& instance : response.instances)
    {
      EXPECT_EQ(instance.second.disposition, InstanceDisposition::RetryLater)
          << "prefix of " << size << " bytes, " << instance.first;
    }
  }
}


TEST(StowResponseTest, MutatedBodiesNeverThrow)
{
  const std::string body =
      MakeDataset({MakeReferencedItem(UID_A)}, {MakeFailedItem(UID_B, REASON_VALIDATION_FAILED)});
  std::mt19937 generator(20261203);
  std::uniform_int_distribution<size_t> position(0, body.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255);

  for (int i = 0; i < 5000; i++)
  {
    std::string mutated = body;
    for (int flips = 0; flips < 1 + i % 4; flips++)
    {
      mutated[position(generator)] = static_cast<char>(byte(generator));
    }

    for (long status : {200L, 400L, 409L})
    {
      StowResponse response;
      ASSERT_NO_THROW(response = Parse(status, mutated, {UID_A, UID_B})) << mutated;
      EXPECT_EQ(response.instances.size(), 2u) << mutated;
      EXPECT_NE(response.instances.at(UID_B).disposition, InstanceDisposition::Mirrored) << mutated;
    }
  }
}


TEST(StowResponseTest, DeepNestingRejected)
{
  const std::string body = std::string(100000, '[') + std::string(100000, ']');

  const StowResponse response = Parse(200, body, {UID_A});

  ExpectUnreadable(response, {UID_A}, "not DICOM JSON");
}


TEST(StowResponseTest, LargeBodyParsed)
{
  std::vector<Json::Value> referenced;
  std::vector<std::string> uids;
  for (int i = 0; i < 20000; i++)
  {
    uids.push_back("1.2.826.0.1.3680043.8.498." + std::to_string(100000 + i));
    referenced.push_back(MakeReferencedItem(uids.back()));
  }

  const StowResponse response = Parse(200, MakeDataset(referenced, {}), uids);

  ASSERT_EQ(response.instances.size(), uids.size());
  EXPECT_EQ(response.instances.at(uids.front()).disposition, InstanceDisposition::Mirrored);
  EXPECT_EQ(response.instances.at(uids.back()).disposition, InstanceDisposition::Mirrored);
}
