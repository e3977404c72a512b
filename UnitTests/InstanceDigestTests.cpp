#include "Common/Exception.h"
#include "Common/Md5.h"
#include "Sync/InstanceDigest.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

using namespace AzureDicom;

namespace
{
const char* const INSTANCE_ID = "0f1e2d3c-4b5a6978-8796a5b4-c3d2e1f0-01234567";
const char* const STORED_MD5 = "0123456789abcdef0123456789abcdef";


std::string Hash(const std::string& data)
{
  Md5 digest;
  digest.Update(data.data(), data.size());
  return digest.Finish();
}


// Returns GET answers from a table of URIs. A URI in `failing` throws like a failed REST call.
class TableGateway : public IOrthancGateway
{
public:
  bool GetJson(Json::Value&, const std::string& uri) override
  {
    ADD_FAILURE() << "unexpected GetJson(" << uri << ")";
    return false;
  }

  bool GetBinary(std::string& answer, const std::string& uri) override
  {
    requests.push_back(uri);
    if (failing.count(uri) > 0)
    {
      throw Exception(ErrorCode::NetworkError, "Orthanc's REST API failed on " + uri);
    }
    const auto found = answers.find(uri);
    if (found == answers.end())
    {
      return false;
    }
    answer = found->second;
    return true;
  }

  std::map<std::string, std::string> answers;
  std::map<std::string, bool> failing;
  std::vector<std::string> requests;
};


std::string Md5Uri()
{
  return std::string("/instances/") + INSTANCE_ID + "/attachments/dicom/md5";
}


std::string FileUri()
{
  return std::string("/instances/") + INSTANCE_ID + "/file";
}
}  // namespace


TEST(InstanceDigest, LargeFileUsesStoredDigest)
{
  TableGateway orthanc;
  orthanc.answers[Md5Uri()] = std::string(STORED_MD5) + "\n";
  const std::string file(MD5_FROM_ORTHANC_MIN_BYTES, 'x');

  EXPECT_EQ(STORED_MD5, GetInstanceMd5(orthanc, INSTANCE_ID, file.data(), file.size()));
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(Md5Uri(), orthanc.requests[0]);
}


TEST(InstanceDigest, SmallFileIsHashedWithoutRequest)
{
  TableGateway orthanc;
  orthanc.answers[Md5Uri()] = STORED_MD5;
  const std::string file(MD5_FROM_ORTHANC_MIN_BYTES - 1, 'x');

  EXPECT_EQ(Hash(file), GetInstanceMd5(orthanc, INSTANCE_ID, file.data(), file.size()));
  EXPECT_TRUE(orthanc.requests.empty());
}


TEST(InstanceDigest, MissingStoredDigestFallsBackToHash)
{
  TableGateway orthanc;
  orthanc.failing[Md5Uri()] = true;
  const std::string file(MD5_FROM_ORTHANC_MIN_BYTES, 'y');

  EXPECT_EQ(Hash(file), GetInstanceMd5(orthanc, INSTANCE_ID, file.data(), file.size()));
}


TEST(InstanceDigest, MalformedStoredDigestFallsBackToHash)
{
  const std::string file(MD5_FROM_ORTHANC_MIN_BYTES, 'z');
  for (const std::string& answer :
       {std::string(""), std::string("not a digest"), std::string("0123456789ABCDEF0123456789ABCDEF"),
        std::string(STORED_MD5) + "00"})
  {
    TableGateway orthanc;
    orthanc.answers[Md5Uri()] = answer;
    EXPECT_EQ(Hash(file), GetInstanceMd5(orthanc, INSTANCE_ID, file.data(), file.size()))
        << "stored digest \"" << answer << "\"";
  }
}


TEST(InstanceDigest, WithoutBytesReadsStoredDigestFirst)
{
  TableGateway orthanc;
  orthanc.answers[Md5Uri()] = STORED_MD5;
  orthanc.answers[FileUri()] = "content";

  EXPECT_EQ(STORED_MD5, GetInstanceMd5(orthanc, INSTANCE_ID));
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(Md5Uri(), orthanc.requests[0]);
}


TEST(InstanceDigest, WithoutBytesHashesFileWhenNoDigest)
{
  TableGateway orthanc;
  orthanc.answers[FileUri()] = "content";

  EXPECT_EQ(Hash("content"), GetInstanceMd5(orthanc, INSTANCE_ID));
}


TEST(InstanceDigest, WithoutBytesMissingInstanceIsEmpty)
{
  TableGateway orthanc;

  EXPECT_EQ("", GetInstanceMd5(orthanc, INSTANCE_ID));
}
