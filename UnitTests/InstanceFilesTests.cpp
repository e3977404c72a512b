#include "Common/Exception.h"
#include "Common/Md5.h"
#include "Sync/InstanceFiles.h"

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


TEST(InstanceFiles, LargeFileUsesStoredDigest)
{
  TableGateway orthanc;
  orthanc.answers[Md5Uri()] = std::string(STORED_MD5) + "\n";
  const std::string file(MD5_FROM_ORTHANC_MIN_BYTES, 'x');

  EXPECT_EQ(STORED_MD5, GetInstanceMd5(orthanc, INSTANCE_ID, file.data(), file.size()));
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(Md5Uri(), orthanc.requests[0]);
}


TEST(InstanceFiles, SmallFileIsHashedWithoutRequest)
{
  TableGateway orthanc;
  orthanc.answers[Md5Uri()] = STORED_MD5;
  const std::string file(MD5_FROM_ORTHANC_MIN_BYTES - 1, 'x');

  EXPECT_EQ(Hash(file), GetInstanceMd5(orthanc, INSTANCE_ID, file.data(), file.size()));
  EXPECT_TRUE(orthanc.requests.empty());
}


TEST(InstanceFiles, MissingStoredDigestFallsBackToHash)
{
  TableGateway orthanc;
  orthanc.failing[Md5Uri()] = true;
  const std::string file(MD5_FROM_ORTHANC_MIN_BYTES, 'y');

  EXPECT_EQ(Hash(file), GetInstanceMd5(orthanc, INSTANCE_ID, file.data(), file.size()));
}


TEST(InstanceFiles, MalformedStoredDigestFallsBackToHash)
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


TEST(InstanceFiles, WithoutBytesReadsStoredDigestFirst)
{
  TableGateway orthanc;
  orthanc.answers[Md5Uri()] = STORED_MD5;
  orthanc.answers[FileUri()] = "content";

  EXPECT_EQ(STORED_MD5, GetInstanceMd5(orthanc, INSTANCE_ID));
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(Md5Uri(), orthanc.requests[0]);
}


TEST(InstanceFiles, WithoutBytesHashesFileWhenNoDigest)
{
  TableGateway orthanc;
  orthanc.answers[FileUri()] = "content";

  EXPECT_EQ(Hash("content"), GetInstanceMd5(orthanc, INSTANCE_ID));
}


TEST(InstanceFiles, WithoutBytesMissingInstanceIsEmpty)
{
  TableGateway orthanc;

  EXPECT_EQ("", GetInstanceMd5(orthanc, INSTANCE_ID));
}


namespace
{
std::string StoredUri()
{
  return std::string("/instances/") + INSTANCE_ID + "/attachments/dicom/compressed-data";
}


// A file that starts like a DICOM file: the 128-byte preamble, then "DICM".
std::string MakeDicomLikeFile(size_t size)
{
  std::string file = std::string(128, '\0') + "DICM";
  file.resize(size, 'd');
  return file;
}


std::string ReadAll(InstanceFileReader& reader, uint64_t expectedSize)
{
  const std::unique_ptr<IBuffer> file = reader.Read(INSTANCE_ID, expectedSize);
  return file ? std::string(file->GetData(), file->GetSize()) : "<null>";
}
}  // namespace


TEST(InstanceFiles, UncompressedStorageSkipsFileRoute)
{
  TableGateway orthanc;
  orthanc.answers[StoredUri()] = MakeDicomLikeFile(1000);
  orthanc.answers[FileUri()] = MakeDicomLikeFile(1000);
  InstanceFileReader reader(orthanc);

  EXPECT_EQ(MakeDicomLikeFile(1000), ReadAll(reader, 1000));
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(StoredUri(), orthanc.requests[0]);
}


TEST(InstanceFiles, CompressedStorageFallsBackToFile)
{
  TableGateway orthanc;
  orthanc.answers[StoredUri()] = "zlib stream of another size";
  orthanc.answers[FileUri()] = MakeDicomLikeFile(1000);
  InstanceFileReader reader(orthanc);

  for (int i = 0; i < 3; i++)
  {
    EXPECT_TRUE(reader.ReadsStoredAttachments()) << "read " << i;
    EXPECT_EQ(MakeDicomLikeFile(1000), ReadAll(reader, 1000)) << "read " << i;
  }

  // Three files of another size in a row: only /file is read from then on.
  EXPECT_FALSE(reader.ReadsStoredAttachments());
  orthanc.requests.clear();
  EXPECT_EQ(MakeDicomLikeFile(1000), ReadAll(reader, 1000));
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(FileUri(), orthanc.requests[0]);
}


TEST(InstanceFiles, MatchingReadResetsMismatchCount)
{
  TableGateway orthanc;
  orthanc.answers[FileUri()] = MakeDicomLikeFile(1000);
  InstanceFileReader reader(orthanc);

  for (int i = 0; i < 10; i++)
  {
    orthanc.answers[StoredUri()] = i % 2 == 0 ? "other size" : MakeDicomLikeFile(1000);
    EXPECT_EQ(MakeDicomLikeFile(1000), ReadAll(reader, 1000)) << "read " << i;
  }
  EXPECT_TRUE(reader.ReadsStoredAttachments());
}


TEST(InstanceFiles, NonDicomStoredBytesReadFile)
{
  TableGateway orthanc;
  const std::string sameSizeNotDicom(1000, 'z');
  orthanc.answers[StoredUri()] = sameSizeNotDicom;
  orthanc.answers[FileUri()] = MakeDicomLikeFile(1000);
  InstanceFileReader reader(orthanc);

  for (int i = 0; i < 5; i++)
  {
    EXPECT_EQ(MakeDicomLikeFile(1000), ReadAll(reader, 1000)) << "read " << i;
  }

  // Bytes of the right size are no sign of compression, so the reader keeps trying.
  EXPECT_TRUE(reader.ReadsStoredAttachments());
  EXPECT_EQ(10u, orthanc.requests.size());
}


TEST(InstanceFiles, UnknownSizeReadsFileRoute)
{
  TableGateway orthanc;
  orthanc.answers[StoredUri()] = MakeDicomLikeFile(1000);
  orthanc.answers[FileUri()] = MakeDicomLikeFile(1000);
  InstanceFileReader reader(orthanc);

  EXPECT_EQ(MakeDicomLikeFile(1000), ReadAll(reader, 0));
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(FileUri(), orthanc.requests[0]);
}


TEST(InstanceFiles, DeletedInstanceReadsNull)
{
  TableGateway orthanc;
  InstanceFileReader reader(orthanc);

  EXPECT_EQ("<null>", ReadAll(reader, 1000));
  EXPECT_EQ(1u, orthanc.requests.size());
}
